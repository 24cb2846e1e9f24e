package engine

// What `pontoon node inspect` and `network inspect` of an overlay network
// show of the cluster: read from etcd when asked, never cached, so that
// what they show is what every node programs from.

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"pontoon/internal/cluster"
	"pontoon/internal/model"
)

// inspectTimeout bounds the cluster reads of `network inspect`: an
// unreachable etcd shows as an error in its "cluster" part, not as a hung
// command.
const inspectTimeout = 3 * time.Second

// vtepMAC is node's VTEP MAC as shown: its record's, or for a record
// without one the MAC its peers are programmed with (nodeVTEPMAC).
func vtepMAC(n cluster.Node) string {
	mac, _ := nodeVTEPMAC(n)
	if mac == nil {
		return ""
	}
	return mac.String()
}

// Node returns one live node of the cluster with its VTEP MAC (in its
// ClusterNode), its slices, and the static addresses its sandboxes hold;
// ErrInvalid without a cluster, ErrNotFound for a node with no live
// record (the error says whether it still holds slices).
func (e *Engine) Node(ctx context.Context, name string) (*model.ClusterNodeInfo, error) {
	if err := model.ValidateName("node", name); err != nil {
		return nil, err
	}
	nodes, err := e.Nodes(ctx) // ErrInvalid without a cluster
	if err != nil {
		return nil, err
	}
	cl := e.cfg.Cluster
	defs, _, err := cl.Networks(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(nodes, func(n model.ClusterNode) bool { return n.Name == name })
	if i < 0 {
		return nil, notLive(ctx, cl, name, defs, nodes)
	}
	info := &model.ClusterNodeInfo{ClusterNode: nodes[i]}
	owner := name + "/"
	for _, d := range defs {
		res, err := cl.StaticReservations(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		for ip, holder := range res {
			if sb, ok := strings.CutPrefix(holder, owner); ok {
				if info.StaticIPs == nil {
					info.StaticIPs = map[string]map[netip.Addr]string{}
				}
				if info.StaticIPs[d.Name] == nil {
					info.StaticIPs[d.Name] = map[netip.Addr]string{}
				}
				info.StaticIPs[d.Name][ip] = sb
			}
		}
	}
	return info, nil
}

// notLive is the error for a node that has no live record.
func notLive(ctx context.Context, cl Cluster, name string, defs []cluster.NetworkDef, live []model.ClusterNode) error {
	var held []string
	for _, d := range defs {
		if s, err := cl.Slices(ctx, d.Name); err == nil {
			if ps, ok := s[name]; ok {
				held = append(held, d.Name+"="+joinPrefixes(ps))
			}
		}
	}
	names := make([]string, len(live))
	for i, n := range live {
		names[i] = n.Name
	}
	if len(held) > 0 {
		return model.NotFoundf("node %s is not live (it left, or its lease expired): it still holds slices %s for when it comes back; live nodes: %s", name, strings.Join(held, " "), strings.Join(names, ", "))
	}
	return model.NotFoundf("no node %s in the cluster: live nodes are %s (see `pontoon node ls`)", name, strings.Join(names, ", "))
}

// clusterNetwork is overlay network nw across the cluster: the nodes
// holding its slices (this one and its peers), and its static addresses.
// A failed read is reported in its Error: the network's local part is
// worth showing without etcd.
func (e *Engine) clusterNetwork(ctx context.Context, nw *model.Network) *model.ClusterNetwork {
	cl := e.cfg.Cluster
	out := &model.ClusterNetwork{Nodes: []model.ClusterNetworkNode{}}
	if cl == nil || nw.Overlay == nil {
		out.Error = "this daemon is no node of a cluster"
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	sl, err := cl.Slices(ctx, nw.Name)
	if err == nil {
		var nodes []cluster.Node
		if nodes, _, err = cl.Nodes(ctx); err == nil {
			var res map[netip.Addr]string
			if res, err = cl.StaticReservations(ctx, nw.Name); err == nil {
				out.Nodes = networkNodes(nw.Overlay, cl.NodeName(), sl, nodes)
				if len(res) > 0 {
					out.StaticIPs = res
				}
				return out
			}
		}
	}
	out.Error = "read the cluster (etcd): " + err.Error()
	return out
}

// networkNodes lists the holders of an overlay's slices, by name, with
// where they are reached when they are live (their underlay address, and
// in vxlan mode the VTEP MAC of their record).
func networkNodes(o *model.OverlayOptions, self string, sl map[string][]netip.Prefix, nodes []cluster.Node) []model.ClusterNetworkNode {
	byName := map[string]cluster.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	out := make([]model.ClusterNetworkNode, 0, len(sl))
	for _, name := range slices.Sorted(maps.Keys(sl)) {
		mine := o.SlicesIn(sl[name])
		if len(mine) == 0 {
			continue // slices of the network's former subnets only
		}
		n, live := byName[name]
		cn := model.ClusterNetworkNode{Node: name, Slices: mine, Live: live, Self: name == self}
		if live {
			cn.Underlay = n.Underlay
			if !o.HostGW() {
				cn.VTEPMAC = vtepMAC(n)
			}
		}
		out = append(out, cn)
	}
	return out
}

// ForgetNode releases what a node gone for good still holds in the
// cluster: its slices, its sandboxes' names, its static addresses
// (cluster.Cluster.Forget). Refused for this node (ErrInvalid) and for a
// live one (ErrConflict).
func (e *Engine) ForgetNode(ctx context.Context, name string) (model.ForgottenNode, error) {
	cl := e.cfg.Cluster
	if cl == nil {
		return model.ForgottenNode{}, model.Invalidf("this daemon is no node of a cluster: start it with --cluster, --node-name and --underlay")
	}
	if name == cl.NodeName() {
		return model.ForgottenNode{}, model.Invalidf("node %s is this one: a node does not forget itself; stop its daemon and run node rm on another node once its lease has expired", name)
	}
	f, err := cl.Forget(ctx, name)
	if err == nil {
		e.log.Info("cluster: forgot a node", "node", name, "slices", len(f.Slices), "names", f.Names, "static_ips", f.Static)
	}
	return f, err
}

// joinPrefixes is ps for people, in one word: "10.200.1.0/24,fd00:200:0:1::/64".
func joinPrefixes(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}
