// Command pontoon-cni is pontoon's CNI plugin (spec 1.1.0; accepts 0.4.0,
// 1.0.0 and 1.1.0 configs). It does no networking itself: every verb is
// forwarded to the pontoon daemon over its API, so a CNI attachment is an
// ordinary pontoon endpoint that `pontoon sandbox ls` shows with its
// container ID and netns path.
//
// Config:
//
//	{"cniVersion": "1.1.0", "name": "mynet", "type": "pontoon",
//	 "network": "NAME",                       // pontoon network (default: the config's name)
//	 "socket": "/run/pontoon/pontoon.sock",   // daemon API socket (default)
//	 "capabilities": {"ips": true, "mac": true}}
//
// A container (CNI_CONTAINERID) is one pontoon sandbox named
// cni-<container ID> that adopts CNI_NETNS; each (network, CNI_IFNAME) is an
// endpoint of it. ADD and DEL are one API request each (POST /v1/cni/add
// and /v1/cni/del): the daemon does the steps. The binary stays small and
// starts fast — a runtime execs it for every verb: it links only the API
// client, which does not link net/http (see internal/api/wire.go).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"pontoon/internal/api"
	"pontoon/internal/model"
)

// LabelNetwork marks sandboxes made through CNI with the CNI network name,
// so GC only looks at its own network's attachments.
const LabelNetwork = "cni.network"

type netConf struct {
	types.PluginConf
	Network       string `json:"network,omitempty"`
	Socket        string `json:"socket,omitempty"`
	RuntimeConfig struct {
		IPs          []string      `json:"ips,omitempty"`
		MAC          string        `json:"mac,omitempty"`
		PortMappings []portMapping `json:"portMappings,omitempty"`
	} `json:"runtimeConfig"`

	// networkFromName: the config set no "network", so Network is its
	// "name" (errors about the network then say so).
	networkFromName bool
}

// portMapping is one entry of the portMappings capability.
type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// mapping is the entry as pontoon's port mapping.
func (p portMapping) mapping() (model.PortMapping, error) {
	m := model.PortMapping{Proto: strings.ToLower(p.Protocol)}
	if p.HostPort < 1 || p.HostPort > 65535 || p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return m, fmt.Errorf("port mapping %d:%d: ports run from 1 to 65535", p.HostPort, p.ContainerPort)
	}
	m.HostPort, m.Port = uint16(p.HostPort), uint16(p.ContainerPort)
	if p.HostIP != "" {
		ip, err := netip.ParseAddr(p.HostIP)
		if err != nil {
			return m, fmt.Errorf("port mapping %d:%d: hostIP %q is not an IP address", p.HostPort, p.ContainerPort, p.HostIP)
		}
		m.HostIP = ip.Unmap()
	}
	return m, m.Normalize()
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus},
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), "pontoon: container networking through the pontoon daemon")
}

func loadConf(data []byte) (*netConf, error) {
	c := &netConf{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot parse the network configuration", err.Error())
	}
	if c.Network == "" {
		c.Network, c.networkFromName = c.Name, true
	}
	if c.Network == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, `the network configuration names no network: set "network" (a pontoon network) or "name"`, "")
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if len(c.RuntimeConfig.IPs) > 2 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "too many addresses in runtimeConfig.ips: give at most one per family (IPv4 and IPv6)", "")
	}
	return c, nil
}

// open is how every verb starts: its network config, a client of the
// daemon that config names, and a deadline for the call.
func open(args *skel.CmdArgs) (*netConf, *api.Client, context.Context, context.CancelFunc, error) {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	return c, api.NewClient(c.Socket), cx, cancel, nil
}

// explain adds to a "not found" error, when the network came from the
// config's "name", where the network name the user never wrote came from.
func (c *netConf) explain(err error) error {
	if c.networkFromName && errors.Is(err, model.ErrNotFound) {
		return fmt.Errorf("%w (this config sets no \"network\", so its \"name\" %q was taken as the pontoon network: set \"network\" to a pontoon network in the plugin's config)", err, c.Name)
	}
	return err
}

// cniError turns an API error into CNI error JSON with the right code.
func cniError(what string, err error) error {
	var te *types.Error
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, api.ErrUnavailable):
		return types.NewError(types.ErrTryAgainLater, what+": the pontoon daemon is not reachable or not ready", err.Error())
	case errors.Is(err, model.ErrInvalid), errors.Is(err, model.ErrNotFound):
		return types.NewError(types.ErrInvalidNetworkConfig, what+": "+err.Error(), "")
	case errors.Is(err, model.ErrExhausted):
		return types.NewError(types.ErrTryAgainLater, what+": "+err.Error(), "")
	}
	return types.NewError(types.ErrInternal, what+": "+err.Error(), "")
}

func cmdAdd(args *skel.CmdArgs) error {
	c, cl, cx, cancel, err := open(args)
	if err != nil {
		return err
	}
	defer cancel()
	var ips []netip.Addr
	for _, s := range c.RuntimeConfig.IPs {
		s, _, _ = strings.Cut(s, "/") // the capability may give a length
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("runtimeConfig.ips: %q is not an IP address", s), "")
		}
		ips = append(ips, ip.Unmap())
	}
	req := api.CNIAddRequest{
		ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName, Network: c.Network,
		IPs: ips, MAC: c.RuntimeConfig.MAC, Labels: map[string]string{LabelNetwork: c.Name},
	}
	for _, pm := range c.RuntimeConfig.PortMappings {
		m, err := pm.mapping()
		if err != nil {
			return types.NewError(types.ErrInvalidNetworkConfig, "runtimeConfig.portMappings: "+err.Error(), "")
		}
		req.Ports = append(req.Ports, m)
	}
	// One request: the daemon creates the container's sandbox or connects
	// it, and starts afresh when the runtime lost the namespace it attached
	// before (engine.AddContainer).
	res, err := cl.CNIAdd(cx, req)
	if err != nil {
		return cniError("ADD", c.explain(err))
	}
	if res.Endpoint == nil {
		return types.NewError(types.ErrInternal, "ADD: the daemon reported no endpoint for "+args.IfName, "")
	}
	return types.PrintResult(resultOf(res.Endpoint, res.Netns, c.CNIVersion), c.CNIVersion)
}

func findEndpoint(sb *model.SandboxInfo, network, ifname string) *model.Endpoint {
	for _, ep := range sb.Endpoints {
		if ep.Network == network && ep.IfName == ifname {
			return ep
		}
	}
	return nil
}

func resultOf(ep *model.Endpoint, netns, cniVersion string) *current.Result {
	idx := 1
	r := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: ep.HostIf},
			{Name: ep.IfName, Mac: ep.MAC, Sandbox: netns},
		},
	}
	// One IPConfig per address, IPv4 first, each with its family's
	// gateway; the primary interface has a default route per family.
	r.DNS = types.DNS{Search: []string{ep.Network}, Options: []string{"ndots:0"}}
	for _, a := range ep.Addresses {
		bits := a.Addr.Addr().BitLen()
		r.IPs = append(r.IPs, &current.IPConfig{
			Interface: &idx,
			Address:   net.IPNet{IP: a.Addr.Addr().AsSlice(), Mask: net.CIDRMask(a.Addr.Bits(), bits)},
			Gateway:   a.Gateway.AsSlice(),
		})
		if ep.Primary {
			r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}, GW: a.Gateway.AsSlice()})
		}
		// The daemon runs a resolver on every gateway of a network:
		// sandboxes find each other by name (NAME and NAME.NETWORK) and
		// the rest is forwarded.
		r.DNS.Nameservers = append(r.DNS.Nameservers, a.Gateway.String())
	}
	return r
}

func cmdDel(args *skel.CmdArgs) error {
	c, cl, cx, cancel, err := open(args)
	if err != nil {
		return err
	}
	defer cancel()
	// One request: the daemon detaches the interface, removes the sandbox
	// with its last one, and answers success when there is nothing to
	// delete (engine.DelContainer).
	if err := cl.CNIDel(cx, api.CNIDelRequest{ContainerID: args.ContainerID, IfName: args.IfName, Network: c.Network}); err != nil {
		return cniError("DEL", err)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	c, cl, cx, cancel, err := open(args)
	if err != nil {
		return err
	}
	defer cancel()
	name := model.CNISandboxName(args.ContainerID)
	sb, err := cl.Sandbox(cx, name)
	if errors.Is(err, model.ErrNotFound) {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("CHECK: pontoon has no attachment for container %s", args.ContainerID), "")
	}
	if err != nil {
		return cniError("CHECK", err)
	}
	ep := findEndpoint(sb, c.Network, args.IfName)
	if ep == nil {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("CHECK: container %s has no interface %s on network %s", args.ContainerID, args.IfName, c.Network), "")
	}
	problems, err := cl.CheckSandbox(cx, name)
	if err != nil {
		return cniError("CHECK", err)
	}
	var mine []string
	for _, p := range problems {
		if p.Network == "" || p.Network == c.Network {
			mine = append(mine, p.Problem)
		}
	}
	if len(mine) > 0 {
		return types.NewError(types.ErrInternal, "CHECK: the attachment drifted: "+strings.Join(mine, "; "), "")
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	c, cl, cx, cancel, err := open(args)
	if err != nil {
		return err
	}
	defer cancel()
	valid := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[a.ContainerID+"\x00"+a.IfName] = true
	}
	sbs, err := cl.Sandboxes(cx)
	if err != nil {
		return cniError("GC", err)
	}
	var errs []error
	for _, sb := range sbs {
		if sb.ContainerID == "" || sb.Labels[LabelNetwork] != c.Name || sb.Name != model.CNISandboxName(sb.ContainerID) {
			continue
		}
		del := func(ifname string) {
			if err := cl.CNIDel(cx, api.CNIDelRequest{ContainerID: sb.ContainerID, IfName: ifname, Network: c.Network}); err != nil {
				errs = append(errs, err)
			}
		}
		if len(sb.Endpoints) == 0 {
			del("") // an attachment left with no interface: the sandbox goes
		}
		for _, ep := range sb.Endpoints {
			if ep.Network == c.Network && !valid[sb.ContainerID+"\x00"+ep.IfName] {
				del(ep.IfName)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cniError("GC", err)
	}
	return nil
}

func cmdStatus(args *skel.CmdArgs) error {
	c, cl, cx, cancel, err := open(args)
	if err != nil {
		return err
	}
	defer cancel()
	st, err := cl.Status(cx)
	if err != nil || !st.Ready {
		msg := "the pontoon daemon is not reachable at " + c.Socket
		if err == nil || errors.Is(err, api.ErrUnavailable) && st != nil {
			msg = "the pontoon daemon is starting (reconciling)"
		}
		detail := ""
		if err != nil {
			detail = err.Error()
		}
		return types.NewError(types.ErrPluginNotAvailable, msg, detail)
	}
	if _, err := cl.Network(cx, c.Network); err != nil {
		if errors.Is(err, model.ErrNotFound) {
			return types.NewError(types.ErrPluginNotAvailable, c.explain(model.NotFoundf("pontoon network %s does not exist: create it with `pontoon network create %s`", c.Network, c.Network)).Error(), "")
		}
		return types.NewError(types.ErrPluginNotAvailable, "pontoon daemon: "+err.Error(), "")
	}
	return nil
}
