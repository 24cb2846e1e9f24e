// Command pontoon-cni is pontoon's CNI plugin (spec 1.1.0; accepts configs
// of every version from 0.1.0 on and answers in the version asked for, so
// runtimes whose libcni predates 1.1 work with a 1.0.0 config). It does no
// networking itself: every verb is forwarded to the pontoon daemon over its
// API, so a CNI attachment is an ordinary pontoon endpoint that `pontoon
// sandbox ls` shows with its container ID and netns path.
//
// Config:
//
//	{"cniVersion": "1.0.0", "name": "mynet", "type": "pontoon",
//	 "network": "NAME",                       // pontoon network (default: the config's name)
//	 "socket": "/run/pontoon/pontoon.sock",   // daemon API socket (default)
//	 "capabilities": {"ips": true, "mac": true, "portMappings": true, "aliases": true}}
//
// From CNI_ARGS it reads IP and MAC (as Podman passes --ip and
// --mac-address), K8S_POD_NAME (the container's or pod's name, registered
// as its first DNS name), K8S_POD_NAMESPACE and K8S_POD_INFRA_CONTAINER_ID
// (kept as labels); from the aliases capability the network's aliases.
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
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
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

// Labels that keep what the runtime said about the container in CNI_ARGS.
const (
	LabelPodName          = "cni.pod_name"           // K8S_POD_NAME: Podman's container name, or the pod's
	LabelPodNamespace     = "cni.pod_namespace"      // K8S_POD_NAMESPACE
	LabelInfraContainerID = "cni.infra_container_id" // K8S_POD_INFRA_CONTAINER_ID
)

// cniArgs is what pontoon reads from CNI_ARGS ("K=V;K=V"). Runtimes pass
// IgnoreUnknown=1 with keys meant for other plugins.
type cniArgs struct {
	types.CommonArgs
	IP                         types.UnmarshallableString
	MAC                        types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString // fields are named as the keys
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
}

type netConf struct {
	types.PluginConf
	Network       string `json:"network,omitempty"`
	Socket        string `json:"socket,omitempty"`
	RuntimeConfig struct {
		IPs          []string      `json:"ips,omitempty"`
		MAC          string        `json:"mac,omitempty"`
		PortMappings []portMapping `json:"portMappings,omitempty"`
		// Aliases maps a CNI network's name to the container's aliases on
		// it (Podman's --network-alias).
		Aliases map[string][]string `json:"aliases,omitempty"`
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
		version.All, "pontoon: container networking through the pontoon daemon")
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

// addRequest is the daemon request for an ADD: the config's capabilities
// and CNI_ARGS merged. An address or MAC given both ways must agree; a bad
// one is refused here, before anything is made.
func addRequest(args *skel.CmdArgs, c *netConf) (api.CNIAddRequest, error) {
	var ca cniArgs
	if err := types.LoadArgs(args.Args, &ca); err != nil {
		return api.CNIAddRequest{}, types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_ARGS %q cannot be read: %v (pontoon reads IP, MAC, K8S_POD_NAME, K8S_POD_NAMESPACE and K8S_POD_INFRA_CONTAINER_ID; pass IgnoreUnknown=1 with keys meant for other plugins)", args.Args, err), "")
	}
	req := api.CNIAddRequest{
		ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName, Network: c.Network,
		Labels: map[string]string{LabelNetwork: c.Name},
	}
	ips, err := pickIPs(c.RuntimeConfig.IPs, string(ca.IP))
	if err != nil {
		return req, err
	}
	req.IPs = ips
	if req.MAC, err = pickMAC(c.RuntimeConfig.MAC, string(ca.MAC)); err != nil {
		return req, err
	}
	for k, v := range map[string]types.UnmarshallableString{LabelPodName: ca.K8S_POD_NAME, LabelPodNamespace: ca.K8S_POD_NAMESPACE,
		LabelInfraContainerID: ca.K8S_POD_INFRA_CONTAINER_ID} {
		if v != "" {
			req.Labels[k] = string(v)
		}
	}
	if req.Aliases, err = dnsNames(string(ca.K8S_POD_NAME), c.RuntimeConfig.Aliases[c.Name], c.Name); err != nil {
		return req, err
	}
	for _, pm := range c.RuntimeConfig.PortMappings {
		m, err := pm.mapping()
		if err != nil {
			return req, types.NewError(types.ErrInvalidNetworkConfig, "runtimeConfig.portMappings: "+err.Error(), "")
		}
		req.Ports = append(req.Ports, m)
	}
	return req, nil
}

// pickIPs returns the requested addresses, at most one per family: from
// the ips capability (runtimeConfig.ips, CIDR or plain) or from CNI_ARGS
// IP (Podman's --ip; several comma-separated), which must agree when both
// are given.
func pickIPs(capIPs []string, argIP string) ([]netip.Addr, error) {
	var fromCap, fromArg []netip.Addr
	for _, s := range capIPs {
		a, err := parseIP(s)
		if err != nil {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("runtimeConfig.ips: %q is not an IP address like 10.88.0.5, 10.88.0.5/24 or fd00::5", s), "")
		}
		fromCap = append(fromCap, a)
	}
	if argIP != "" {
		for _, s := range strings.Split(argIP, ",") {
			a, err := parseIP(strings.TrimSpace(s))
			if err != nil {
				return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS IP=%s: %q is not an IP address like 10.88.0.5 or fd00::5 (the runtime's --ip)", argIP, s), "")
			}
			fromArg = append(fromArg, a)
		}
	}
	for _, l := range [][]netip.Addr{fromCap, fromArg} {
		if len(l) == 2 && l[0].Is4() == l[1].Is4() || len(l) > 2 {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("addresses %v: give at most one per family (IPv4 and IPv6)", l), "")
		}
	}
	switch {
	case len(fromCap) > 0 && len(fromArg) > 0:
		for _, a := range fromArg {
			if !slices.Contains(fromCap, a) {
				return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("two sets of addresses asked for: %v in runtimeConfig.ips and %v in CNI_ARGS IP: give one", fromCap, fromArg), "")
			}
		}
		return fromCap, nil
	case len(fromCap) > 0:
		return fromCap, nil
	}
	return fromArg, nil
}

// parseIP reads an address, alone or with a prefix length.
func parseIP(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err
}

// pickMAC returns the requested MAC: from the mac capability or from
// CNI_ARGS MAC (Podman's --mac-address), which must agree when both are
// given. The daemon checks that it is a unicast Ethernet address.
func pickMAC(capMAC, argMAC string) (string, error) {
	if argMAC != "" {
		if _, err := net.ParseMAC(argMAC); err != nil {
			return "", types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS MAC=%s is not a MAC address like 02:42:0a:58:00:02 (the runtime's --mac-address)", argMAC), "")
		}
	}
	switch {
	case capMAC != "" && argMAC != "" && !strings.EqualFold(capMAC, argMAC):
		return "", types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("two MACs asked for: %s in runtimeConfig.mac and %s in CNI_ARGS MAC: give one", capMAC, argMAC), "")
	case capMAC != "":
		return capMAC, nil
	}
	return argMAC, nil
}

// dnsNames returns the names the container answers to on the network
// besides its sandbox name: its name (K8S_POD_NAME) first, then the
// aliases the runtime gave for the CNI network, each once. A name that
// cannot be a pontoon name (Kubernetes allows pod names of 253 characters)
// is only kept as a label; an alias the user asked for must be valid.
func dnsNames(podName string, aliases []string, cniNetwork string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if k := model.DNSKey(n); !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	if podName != "" && model.ValidateName("alias", podName) == nil {
		add(podName)
	}
	for _, a := range aliases {
		if err := model.ValidateName("alias", a); err != nil {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("runtimeConfig.aliases[%q]: %v", cniNetwork, err), "")
		}
		add(a)
	}
	return out, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	c, cl, cx, cancel, err := open(args)
	if err != nil {
		return err
	}
	defer cancel()
	req, err := addRequest(args, c)
	if err != nil {
		return err
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
	return printResult(os.Stdout, resultOf(res.Endpoint, res.Netns), c.CNIVersion)
}

// printResult writes the result in the version the config asked for: the
// spec wants the result's version to be the config's, and a runtime whose
// libcni predates 1.1 cannot read a 1.1.0 result (it asks for 1.0.0).
func printResult(w io.Writer, r *current.Result, cniVersion string) error {
	if cniVersion == "" {
		cniVersion = "0.1.0" // the spec: a config without cniVersion is 0.1.0
	}
	v, err := r.GetAsVersion(cniVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("ADD: cannot express the result in CNI version %s: %v", cniVersion, err), "")
	}
	return v.PrintTo(w)
}

func findEndpoint(sb *model.SandboxInfo, network, ifname string) *model.Endpoint {
	for _, ep := range sb.Endpoints {
		if ep.Network == network && ep.IfName == ifname {
			return ep
		}
	}
	return nil
}

func resultOf(ep *model.Endpoint, netns string) *current.Result {
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
