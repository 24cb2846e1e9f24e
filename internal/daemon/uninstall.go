package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"pontoon/internal/engine"
	"pontoon/internal/firewall"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/netns"
	"pontoon/internal/store"
)

// Uninstalled says what Uninstall removed.
type Uninstalled struct {
	Sandboxes, Networks, Links, Pins int
	Paths                            []string // files and directories removed
}

// Uninstall removes what pontoon made on this host — in the daemon's
// network namespace and on opts' paths — with the daemon stopped (it is
// refused while one runs on them): every sandbox (as `sandbox rm` would:
// its endpoints, the namespace pontoon created, its resolv.conf; an
// adopted namespace keeps everything pontoon did not add), every network's
// bridge (not one adopted with --bridge), links and pins with pontoon's
// names that its state does not know, both nftables tables (and those of
// a trace a dead daemon left), the DOCKER-USER rules, the pin directory's
// bind mount, the state files and the socket. It keeps what it cannot know was not there before:
// net.ipv4.ip_forward, --etc-netns-dir itself, and the binaries.
//
// It goes on past a failure, so that one run removes all it can, and
// returns every error joined.
func Uninstall(ctx context.Context, opts Options, log *slog.Logger) (*Uninstalled, error) {
	if err := preflight(opts); err != nil {
		return nil, fmt.Errorf("stop the daemon before uninstalling: %w", err)
	}
	done := &Uninstalled{}
	var errs []error
	lk, err := link.New(log)
	if err != nil {
		return nil, err
	}
	fw, err := firewall.New(log)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	state := filepath.Join(opts.Root, stateFile)
	if _, err := os.Stat(state); err == nil {
		st, err := store.Open(state, log)
		if err != nil {
			return nil, err
		}
		eng, err := engine.New(engine.Config{Store: st, Link: lk, Firewall: fw, Netns: Namespaces{}, Log: log,
			NetnsDir: opts.NetnsDir, EtcNetnsDir: opts.EtcNetnsDir})
		if err != nil {
			st.Close()
			return nil, err
		}
		errs = append(errs, removeRecorded(ctx, eng, lk, opts.EtcNetnsDir, done))
		eng.Close() // finishes the background teardown of veths and resolv.conf files
		st.Close()
	}
	// What carries pontoon's names but no record (a state directory
	// removed by hand, another --root) goes too: with the state gone,
	// nothing will ever collect it.
	links, err := lk.ListLinks(model.HostVethPrefix, model.BridgePrefix, model.DefaultBridge, model.TapPrefix, model.ShimPrefix)
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	var veths []string
	for _, l := range links {
		switch {
		case strings.HasPrefix(l.Name, model.HostVethPrefix), strings.HasPrefix(l.Name, model.TapPrefix), strings.HasPrefix(l.Name, model.ShimPrefix):
			veths = append(veths, l.Name)
		case l.Name == model.DefaultBridge || strings.HasPrefix(l.Name, model.BridgePrefix):
			if err := lk.DeleteBridge(l.Name); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w", l.Name, err))
				continue
			}
			done.Links++
		}
	}
	if len(veths) > 0 {
		if err := lk.DeleteVeths(veths); err != nil {
			errs = append(errs, fmt.Errorf("delete veths: %w", err))
		} else {
			done.Links += len(veths)
		}
	}
	pins, err := netns.Pins(opts.NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list pins in %s: %w", opts.NetnsDir, err))
	}
	for _, p := range pins {
		if err := netns.Delete(p); err != nil {
			errs = append(errs, fmt.Errorf("delete pin %s: %w", p, err))
			continue
		}
		done.Pins++
	}
	if err := fw.Delete(ctx); err != nil {
		errs = append(errs, fmt.Errorf("delete pontoon's nftables tables: %w", err))
	}
	if t, ok := fw.(firewall.Tracer); ok { // tables of a trace a dead daemon left
		if _, err := t.SweepTraces(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if mountedAt(opts.NetnsDir) {
		if err := unix.Unmount(opts.NetnsDir, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", opts.NetnsDir, err))
		}
	}
	// Only pontoon's own files, then the directories if that left them
	// empty: --root or the socket's directory may hold other things.
	for _, p := range append(store.Files(state), filepath.Join(opts.Root, webTokenFile), opts.Root, opts.NetnsDir, opts.Socket, filepath.Dir(opts.Socket)) {
		err := os.Remove(p)
		switch {
		case err == nil:
			done.Paths = append(done.Paths, p)
		case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST), errors.Is(err, unix.EBUSY):
			// Gone already, or a directory that holds other things or is
			// someone's mount point: it stays.
		default:
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	return done, errors.Join(errs...)
}

// removeRecorded removes every sandbox and network the state records, the
// way the API would.
func removeRecorded(ctx context.Context, eng *engine.Engine, lk link.Interface, etcNetns string, done *Uninstalled) error {
	var errs []error
	sbs, err := eng.Sandboxes()
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	for _, sb := range sbs {
		if err := eng.RemoveSandbox(ctx, sb.Name); err != nil && !errors.Is(err, model.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		done.Sandboxes++
		// The engine runs without DNS here, so its resolv.conf writer
		// leaves the files alone: remove the one the daemon wrote, and
		// its directory unless something else is in it.
		if sb.Kind == model.KindPontoon && etcNetns != "" {
			dir := filepath.Join(etcNetns, sb.Name)
			if err := os.Remove(filepath.Join(dir, "resolv.conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			_ = os.Remove(dir)
		}
	}
	nets, err := eng.Networks()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	for _, n := range nets {
		if n.Name == model.DefaultNetwork {
			// The engine keeps the default network; its bridge goes here.
			if !n.BridgeAdopted {
				if err := lk.DeleteBridge(n.Bridge); err != nil {
					errs = append(errs, fmt.Errorf("delete bridge %s: %w", n.Bridge, err))
					continue
				}
			}
			done.Networks++
			continue
		}
		if err := eng.RemoveNetwork(ctx, n.Name, true); err != nil && !errors.Is(err, model.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		done.Networks++
	}
	return errors.Join(errs...)
}
