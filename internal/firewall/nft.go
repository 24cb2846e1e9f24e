package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"
)

// nft implements Interface over a knftables.Interface: the real one (which
// execs nft once per transaction) or knftables.Fake.
//
// nft runs in the network namespace of the thread that calls Sync: the
// daemon's, or a test's namespace (testutil.InNetns).
type nft struct {
	log *slog.Logger
	nft knftables.Interface
	// dump prints the table in nft syntax.
	dump   func(ctx context.Context) (string, error)
	docker dockerUser
	elems  elementWriter       // published ports, between Syncs
	br     knftables.Interface // table bridge pontoon: anti-spoofing
	guards guardWriter
	// watch and check back Watch and Check (real: nftables over netlink;
	// fake: in memory).
	watch func(ctx context.Context) (<-chan Event, error)
	check func(want State) string

	mu sync.Mutex // one Sync/Delete at a time: DOCKER-USER is read, then changed
}

// New returns the real implementation. Each Sync costs one nft process
// (a few milliseconds) plus one iptables process to look for DOCKER-USER:
// paid when networks change, never per endpoint.
func New(log *slog.Logger) (Interface, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k, err := knftables.New(knftables.InetFamily, TableName)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	nw, err := newNetlinkWriter()
	if err != nil {
		return nil, err
	}
	br, err := knftables.New(knftables.BridgeFamily, TableName)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &nft{log: log, nft: k, dump: listTable, docker: newDockerUser(log), elems: netlinkElements{w: nw},
		br: br, guards: netlinkGuards{w: nw}, watch: watchNftables, check: checkNftables}, nil
}

func (f *nft) Watch(ctx context.Context) (<-chan Event, error) { return f.watch(ctx) }

func (f *nft) Check(_ context.Context, want State) string { return f.check(want) }

func (f *nft) Sync(ctx context.Context, s State) error {
	if err := validate(s); err != nil {
		return fmt.Errorf("firewall state: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tx := f.nft.NewTransaction()
	build(tx, s)
	f.log.Debug("nft transaction", "table", "inet "+TableName, "networks", len(s.Networks), "text", tx.String())
	if err := f.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("apply table inet %s: %w", TableName, err)
	}
	if err := f.syncGuard(ctx, s.Guards); err != nil {
		return err
	}
	// After our table: a network's DOCKER-USER rules only let traffic
	// through that our table already judges.
	if err := f.docker.sync(ctx, s.Networks); err != nil {
		return fmt.Errorf("DOCKER-USER: %w", err)
	}
	return nil
}

func (f *nft) Exists(ctx context.Context) (bool, error) {
	_, err := f.nft.List(ctx, "chains")
	switch {
	case knftables.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("list table inet %s: %w", TableName, err)
	}
	return true, nil
}

func (f *nft) Delete(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	tx := f.nft.NewTransaction()
	// add + delete: deleting a missing table is then not an error (Debian
	// 12's nft 1.0.6 has no `destroy`).
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	f.log.Debug("nft transaction", "table", "inet "+TableName, "text", tx.String())
	if err := f.nft.Run(ctx, tx); err != nil {
		errs = append(errs, fmt.Errorf("delete table inet %s: %w", TableName, err))
	}
	btx := f.br.NewTransaction()
	btx.Add(&knftables.Table{})
	btx.Delete(&knftables.Table{})
	if err := f.br.Run(ctx, btx); err != nil {
		errs = append(errs, fmt.Errorf("delete table bridge %s: %w", TableName, err))
	}
	// Keep going: our DOCKER-USER rules must go even if the table would not.
	if err := f.docker.sync(ctx, nil); err != nil {
		errs = append(errs, fmt.Errorf("DOCKER-USER: %w", err))
	}
	return errors.Join(errs...)
}

func (f *nft) Dump(ctx context.Context) (string, error) { return f.dump(ctx) }

// listTable returns `nft list table inet pontoon`; empty when there is none.
func listTable(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "nft", "list", "table", "inet", TableName)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "No such file or directory") {
			return "", nil
		}
		return "", fmt.Errorf("nft list table inet %s: %w: %s", TableName, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
