// Package ovs manages Open vSwitch bridges and ports for pontoon through
// OVSDB (RFC 7047), with the libovsdb client: no ovs-vsctl process per
// operation.
//
// Design notes:
//
//   - The models (Open_vSwitch, Bridge, Port, Interface) are written by hand
//     with only the columns pontoon reads or writes; the client monitors just
//     those columns and answers reads from its cache.
//   - Every change is one OVSDB transaction: a bridge is its internal
//     Interface, its Port, the Bridge and the reference from the root row; a
//     port is its Interface, the Port and the reference from its Bridge;
//     deleting many ports is one mutation per bridge in one transaction.
//     Ports and Interfaces are not root tables, so dropping the reference
//     garbage-collects them.
//   - OVSDB is only the desired state; ovs-vswitchd applies it afterwards.
//     Adds wait (bounded) for vswitchd's answer in the rows themselves:
//     ofport (> 0 attached, -1 failed with the reason in the error column)
//     and the internal interface's ifindex. Deletes leave nothing to watch
//     in the rows, so they bump next_cfg in the same transaction and wait
//     for vswitchd to report it in cur_cfg, as ovs-vsctl does.
//   - Bridges use the userspace datapath (datapath_type=netdev): there may be
//     no openvswitch kernel module. vswitchd then reads and writes ports
//     through AF_PACKET sockets and makes internal interfaces tap devices in
//     its own network namespace. Bringing the internal interface up and
//     giving it addresses is the kernel adapter's job (internal/link), not
//     OVS's.
//   - With the userspace datapath, TCP through veth ports fails unless
//     other_config:userspace-tso-enable=true, while ping works
//     (TestTCPNeedsUserspaceTSO: on OVS 3.1 even the handshake times out).
//     A veth leaves TCP checksums, and segmentation of large sends, to
//     offload; vswitchd learns about that, and finishes the work, only
//     through the virtio-net header that this flag makes it negotiate on its
//     AF_PACKET sockets. vswitchd reads the flag once (it can be turned on,
//     never off, while it runs) and applies it to ports it opens
//     afterwards, so Dial sets it before any bridge or port is made.
package ovs

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// WaitTimeout bounds every wait for ovs-vswitchd to apply a change.
const WaitTimeout = 10 * time.Second

// DatapathType is the datapath of every bridge pontoon makes: the userspace
// one, which needs no kernel module.
const DatapathType = "netdev"

// tsoKey is the Open_vSwitch other_config key without which TCP through
// veth ports on a netdev bridge fails (see the package doc).
const tsoKey = "userspace-tso-enable"

// The models: only the columns pontoon needs.

type openvSwitch struct {
	UUID        string            `ovsdb:"_uuid"`
	Bridges     []string          `ovsdb:"bridges"`
	OtherConfig map[string]string `ovsdb:"other_config"`
	NextCfg     int               `ovsdb:"next_cfg"`
	CurCfg      int               `ovsdb:"cur_cfg"`
}

type bridgeRow struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	Ports        []string          `ovsdb:"ports"`
	DatapathType string            `ovsdb:"datapath_type"`
	ExternalIDs  map[string]string `ovsdb:"external_ids"`
	OtherConfig  map[string]string `ovsdb:"other_config"`
}

type portRow struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Interfaces  []string          `ovsdb:"interfaces"`
	Tag         *int              `ovsdb:"tag"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

type interfaceRow struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Type        string            `ovsdb:"type"`
	OFPort      *int              `ovsdb:"ofport"`
	Error       *string           `ovsdb:"error"`
	Ifindex     *int              `ovsdb:"ifindex"`
	MTURequest  *int              `ovsdb:"mtu_request"`
	MTU         *int              `ovsdb:"mtu"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

// Client manages bridges and ports through one OVSDB connection. Its
// methods may be called from several goroutines.
type Client struct {
	db       client.Client
	endpoint string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every cache change
}

// Dial connects to the OVSDB server at endpoint ("unix:/path/db.sock",
// "tcp:127.0.0.1:6640"), starts monitoring the tables pontoon uses and
// ensures other_config:userspace-tso-enable=true on the Open_vSwitch row
// (creating the row on a fresh database, as `ovs-vsctl init` would).
func Dial(ctx context.Context, endpoint string) (*Client, error) {
	return dial(ctx, endpoint, true)
}

// dial is Dial; the tests turn tso off to show what the flag is for.
func dial(ctx context.Context, endpoint string, tso bool) (*Client, error) {
	dbModel, err := model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		"Open_vSwitch": &openvSwitch{},
		"Bridge":       &bridgeRow{},
		"Port":         &portRow{},
		"Interface":    &interfaceRow{},
	})
	if err != nil {
		return nil, fmt.Errorf("ovs: model: %w", err)
	}
	// Not leader-only: pontoon's OVSDB is a standalone server, and
	// leader-only would monitor the _Server database too.
	db, err := client.NewOVSDBClient(dbModel, client.WithEndpoint(endpoint), client.WithLeaderOnly(false))
	if err != nil {
		return nil, fmt.Errorf("ovs: endpoint %q: %w", endpoint, err)
	}
	if err := db.Connect(ctx); err != nil {
		return nil, dialError(endpoint, err)
	}
	c := &Client{db: db, endpoint: endpoint, changed: make(chan struct{})}
	poke := func(string, model.Model) { c.poke() }
	db.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    poke,
		DeleteFunc: poke,
		UpdateFunc: func(string, model.Model, model.Model) { c.poke() },
	})
	var (
		o  openvSwitch
		b  bridgeRow
		p  portRow
		it interfaceRow
	)
	if _, err := db.Monitor(ctx, db.NewMonitor(
		client.WithTable(&o, &o.Bridges, &o.OtherConfig, &o.NextCfg, &o.CurCfg),
		client.WithTable(&b, &b.Name, &b.Ports, &b.DatapathType, &b.ExternalIDs, &b.OtherConfig),
		client.WithTable(&p, &p.Name, &p.Interfaces, &p.Tag, &p.ExternalIDs),
		client.WithTable(&it, &it.Name, &it.Type, &it.OFPort, &it.Error, &it.Ifindex, &it.MTURequest, &it.MTU, &it.ExternalIDs),
	)); err != nil {
		db.Close()
		return nil, fmt.Errorf("ovs: monitor %s: %w", endpoint, err)
	}
	if err := c.ensureTSO(ctx, tso); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// dialError says what was tried and how to start OVS.
func dialError(endpoint string, err error) error {
	listen := "--remote=p" + endpoint
	if u, perr := url.Parse(endpoint); perr == nil && u.Scheme == "unix" {
		listen = "--remote=punix:" + u.Opaque + u.Path
	}
	return fmt.Errorf("ovs: connect to OVSDB at %s: %w\n"+
		"Is Open vSwitch running with that database socket? Start it with:\n"+
		"  ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema   # once\n"+
		"  ovsdb-server /etc/openvswitch/conf.db %s --pidfile --detach --log-file\n"+
		"  ovs-vswitchd %s --pidfile --detach --log-file\n"+
		"(no openvswitch kernel module is needed: pontoon's bridges use the userspace datapath)",
		endpoint, err, listen, endpoint)
}

// Close closes the connection.
func (c *Client) Close() { c.db.Close() }

// Connected reports whether the connection to the OVSDB server is up
// (false once ovsdb-server went away: Dial again).
func (c *Client) Connected() bool { return c.db.Connected() }

func (c *Client) poke() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *Client) changes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// await calls done after every change of the cache until it reports true
// or fails, for at most WaitTimeout.
func (c *Client) await(ctx context.Context, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, WaitTimeout)
	defer cancel()
	for {
		ch := c.changes() // before the check, so no change is missed
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: ovs-vswitchd did not answer within %v (is it running, connected to %s?): %w",
				what, WaitTimeout, c.endpoint, ctx.Err())
		}
	}
}

// root returns the cached Open_vSwitch row.
func (c *Client) root() (*openvSwitch, error) {
	var rows []openvSwitch
	if err := c.db.List(context.Background(), &rows); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errNoRoot
	}
	return &rows[0], nil
}

var errNoRoot = errors.New("the database has no Open_vSwitch row")

// ensureTSO sets other_config:userspace-tso-enable=true (or, for tests,
// false), creating the root row on a fresh database.
func (c *Client) ensureTSO(ctx context.Context, tso bool) error {
	want := fmt.Sprint(tso)
	o, err := c.root()
	if errors.Is(err, errNoRoot) {
		ops, err := c.db.Create(&openvSwitch{UUID: "root", OtherConfig: map[string]string{tsoKey: want}})
		if err != nil {
			return fmt.Errorf("ovs: create the Open_vSwitch row: %w", err)
		}
		_, err = c.transact(ctx, "create the Open_vSwitch row", ops)
		return err
	}
	if err != nil {
		return fmt.Errorf("ovs: read the Open_vSwitch row: %w", err)
	}
	if o.OtherConfig[tsoKey] == want {
		return nil
	}
	// Delete then insert: a map insert keeps an existing key's value.
	ops, err := c.db.Where(o).Mutate(o,
		model.Mutation{Field: &o.OtherConfig, Mutator: ovsdb.MutateOperationDelete, Value: []string{tsoKey}},
		model.Mutation{Field: &o.OtherConfig, Mutator: ovsdb.MutateOperationInsert, Value: map[string]string{tsoKey: want}})
	if err != nil {
		return fmt.Errorf("ovs: set other_config:%s: %w", tsoKey, err)
	}
	_, err = c.transact(ctx, "set other_config:"+tsoKey+"="+want, ops)
	return err
}

// transact runs ops as one transaction and turns failed operations into an
// error.
func (c *Client) transact(ctx context.Context, what string, ops []ovsdb.Operation) ([]ovsdb.OperationResult, error) {
	res, err := c.db.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("ovs: %s: %w", what, err)
	}
	if opErrs, err := ovsdb.CheckOperationResults(res, ops); err != nil {
		msgs := make([]string, 0, len(opErrs))
		for _, e := range opErrs {
			msgs = append(msgs, e.Error())
		}
		if len(msgs) == 0 {
			msgs = append(msgs, err.Error())
		}
		return nil, fmt.Errorf("ovs: %s: %s", what, strings.Join(msgs, "; "))
	}
	return res, nil
}

// create returns the insert operations of rows of different tables
// (libovsdb's Create takes one table at a time).
func (c *Client) create(rows ...model.Model) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	for _, r := range rows {
		op, err := c.db.Create(r)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op...)
	}
	return ops, nil
}

// bumpCfg returns the operations that increment next_cfg and read it back
// in the same transaction; cfgOf finds the value in the results.
func (c *Client) bumpCfg() ([]ovsdb.Operation, error) {
	o, err := c.root()
	if err != nil {
		return nil, fmt.Errorf("ovs: read the Open_vSwitch row: %w", err)
	}
	ops, err := c.db.Where(o).Mutate(o, model.Mutation{Field: &o.NextCfg, Mutator: ovsdb.MutateOperationAdd, Value: 1})
	if err != nil {
		return nil, err
	}
	return append(ops, ovsdb.Operation{
		Op: ovsdb.OperationSelect, Table: "Open_vSwitch", Columns: []string{"next_cfg"},
		Where: []ovsdb.Condition{ovsdb.NewCondition("_uuid", ovsdb.ConditionEqual, ovsdb.UUID{GoUUID: o.UUID})},
	}), nil
}

// cfgOf returns next_cfg from the result of the select that bumpCfg put
// last in a transaction.
func cfgOf(res []ovsdb.OperationResult, selectIdx int) (int, error) {
	if selectIdx >= len(res) || len(res[selectIdx].Rows) != 1 {
		return 0, errors.New("ovs: next_cfg missing from the transaction's result")
	}
	switch v := res[selectIdx].Rows[0]["next_cfg"].(type) {
	case int:
		return v, nil
	case float64:
		return int(v), nil
	default:
		return 0, fmt.Errorf("ovs: next_cfg of type %T", v)
	}
}

// awaitCfg waits until ovs-vswitchd has applied configuration cfg.
func (c *Client) awaitCfg(ctx context.Context, what string, cfg int) error {
	return c.await(ctx, what, func() (bool, error) {
		o, err := c.root()
		if err != nil {
			return false, err
		}
		return o.CurCfg >= cfg, nil
	})
}
