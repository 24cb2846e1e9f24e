package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/containernetworking/cni/pkg/version"

	"pontoon/internal/model"
)

// Without "network" the config's "name" is the pontoon network, and an
// error about that network says where the name came from.
func TestNetworkFromName(t *testing.T) {
	c, err := loadConf([]byte(`{"cniVersion": "1.1.0", "name": "mynet", "type": "pontoon"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "mynet" {
		t.Fatalf("network %q, want the name mynet", c.Network)
	}
	nf := model.NotFoundf(`network "mynet" not found`)
	got := c.explain(nf)
	if !errors.Is(got, model.ErrNotFound) || !strings.Contains(got.Error(), `sets no "network", so its "name" "mynet" was taken as the pontoon network`) {
		t.Fatalf("explain: %v", got)
	}
	if other := errors.New("boom"); c.explain(other) != other {
		t.Fatal("explain changed an error that is not about a missing network")
	}

	c, err = loadConf([]byte(`{"cniVersion": "1.1.0", "name": "mynet", "type": "pontoon", "network": "back"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "back" || c.explain(nf) != nf {
		t.Fatalf("with network set: %q, %v", c.Network, c.explain(nf))
	}
}

// The result is written in the version the config asked for, for every
// version the plugin accepts: a runtime's libcni reads it with its own
// types for that version (Debian 12's Podman and containerd ask for 1.0.0
// at most).
func TestResultInRequestedVersion(t *testing.T) {
	ep := &model.Endpoint{Network: "pontoon", IfName: "eth0", HostIf: "pn-abc", MAC: "02:00:00:00:00:05",
		Addresses: []model.Address{{Addr: netip.MustParsePrefix("10.91.0.6/24"), Gateway: netip.MustParseAddr("10.91.0.1")}}, Primary: true}
	for _, v := range append(version.All.SupportedVersions(), "") {
		var buf bytes.Buffer
		if err := printResult(&buf, resultOf(ep, "/run/netns/x"), v); err != nil {
			t.Fatalf("version %q: %v", v, err)
		}
		want := v
		if want == "" {
			want = "0.1.0"
		}
		var got struct {
			CNIVersion string `json:"cniVersion"`
		}
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil || got.CNIVersion != want {
			t.Fatalf("asked for %q, the result says %q (%v):\n%s", v, got.CNIVersion, err, buf.String())
		}
		r, err := create.Create(want, buf.Bytes())
		if err != nil {
			t.Fatalf("version %s: libcni cannot read the result: %v", want, err)
		}
		cur, err := current.NewResultFromResult(r)
		if err != nil || len(cur.IPs) != 1 || cur.IPs[0].Address.String() != "10.91.0.6/24" || cur.IPs[0].Gateway.String() != "10.91.0.1" {
			t.Fatalf("version %s: address lost in conversion: %+v %v", want, cur, err)
		}
	}
}

func skelArgs(cniArgs string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "c1", Netns: "/run/netns/c1", IfName: "eth0", Args: cniArgs}
}

func mustConf(t *testing.T, js string) *netConf {
	t.Helper()
	c, err := loadConf([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// What Podman 4 passes: --ip and --mac-address in CNI_ARGS, the container
// name as K8S_POD_NAME, --network-alias through the aliases capability.
func TestAddRequestFromPodman(t *testing.T) {
	c := mustConf(t, `{"cniVersion": "1.0.0", "name": "app", "network": "back", "type": "pontoon",
		"runtimeConfig": {"aliases": {"app": ["web", "WEB", "www"], "other": ["no"]},
		"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}`)
	req, err := addRequest(skelArgs("IgnoreUnknown=1;K8S_POD_NAME=web1;IP=10.91.0.6;MAC=02:00:00:00:00:05;K8S_POD_NAMESPACE=ns;K8S_POD_INFRA_CONTAINER_ID=abc;FOO=bar"), c)
	if err != nil {
		t.Fatal(err)
	}
	if joinAddrs(req.IPs) != "10.91.0.6" || req.MAC != "02:00:00:00:00:05" || req.Network != "back" {
		t.Fatalf("ips %v mac %q network %q", req.IPs, req.MAC, req.Network)
	}
	if !slices.Equal(req.Aliases, []string{"web1", "web", "www"}) {
		t.Fatalf("aliases %q: want the name first, then the app network's aliases once each", req.Aliases)
	}
	want := map[string]string{LabelNetwork: "app", LabelPodName: "web1", LabelPodNamespace: "ns", LabelInfraContainerID: "abc"}
	if !maps.Equal(req.Labels, want) {
		t.Fatalf("labels %v, want %v", req.Labels, want)
	}
	if len(req.Ports) != 1 || req.Ports[0].String() != "8080:80/tcp" {
		t.Fatalf("ports %q", req.Ports)
	}
}

func TestAddRequestAddresses(t *testing.T) {
	withIPs := `{"cniVersion": "1.0.0", "name": "app", "type": "pontoon", "runtimeConfig": {"ips": ["10.91.0.7/24"], "mac": "02:00:00:00:00:07"}}`
	for _, tc := range []struct {
		conf, args     string
		ip, mac, error string
	}{
		{conf: withIPs, args: "", ip: "10.91.0.7", mac: "02:00:00:00:00:07"},
		{conf: withIPs, args: "IP=10.91.0.7;MAC=02:00:00:00:00:07", ip: "10.91.0.7", mac: "02:00:00:00:00:07"},
		{conf: withIPs, args: "IP=10.91.0.8", error: "two sets of addresses asked for: [10.91.0.7] in runtimeConfig.ips and [10.91.0.8] in CNI_ARGS IP"},
		{conf: withIPs, args: "MAC=02:00:00:00:00:08", error: "two MACs asked for"},
		{args: "IP=10.91.0.8/24", ip: "10.91.0.8"},
		{args: "IP=10.91.0", error: `CNI_ARGS IP=10.91.0: "10.91.0" is not an IP address`},
		{args: "IP=10.91.0.8,10.91.0.9", error: "at most one per family"},
		{args: "IP=10.91.0.8,fd00::8", ip: "10.91.0.8,fd00::8"},
		{conf: `{"cniVersion": "1.0.0", "name": "app", "type": "pontoon", "runtimeConfig": {"ips": ["10.91.0.7/24", "fd00::7/64"]}}`, ip: "10.91.0.7,fd00::7"},
		{args: "MAC=zz:00:00:00:00:08", error: "CNI_ARGS MAC=zz:00:00:00:00:08 is not a MAC address"},
		{args: "FOO=1", error: "pass IgnoreUnknown=1"},
		{args: "IgnoreUnknown=1;K8S_POD_NAME=" + strings.Repeat("p", 70)}, // too long to be a name: kept as a label only
		{conf: `{"cniVersion": "1.0.0", "name": "app", "type": "pontoon", "runtimeConfig": {"aliases": {"app": ["bad alias"]}}}`,
			error: `runtimeConfig.aliases["app"]: alias name "bad alias" has characters that are not allowed`},
	} {
		conf := tc.conf
		if conf == "" {
			conf = `{"cniVersion": "1.0.0", "name": "app", "type": "pontoon"}`
		}
		req, err := addRequest(skelArgs(tc.args), mustConf(t, conf))
		if tc.error != "" {
			var te *types.Error
			if err == nil || !strings.Contains(err.Error(), tc.error) || !errors.As(err, &te) || te.Code == 0 {
				t.Errorf("%s %s: error %v, want a CNI error with %q", conf, tc.args, err, tc.error)
			}
			continue
		}
		if err != nil || joinAddrs(req.IPs) != tc.ip || req.MAC != tc.mac || len(req.Aliases) != 0 {
			t.Errorf("%s %s: ips %v mac %q aliases %q, err %v; want ip %q mac %q", conf, tc.args, req.IPs, req.MAC, req.Aliases, err, tc.ip, tc.mac)
		}
	}
}

func joinAddrs(as []netip.Addr) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, ",")
}

// A dual-stack endpoint gives one IPConfig per address, a default route
// per family on the primary interface, and both gateways as name servers.
func TestResultDualStack(t *testing.T) {
	ep := &model.Endpoint{Network: "app", IfName: "eth0", HostIf: "ptv-1", MAC: "02:42:0a:5a:01:05", Primary: true,
		Addresses: []model.Address{
			{Addr: netip.MustParsePrefix("10.90.1.5/24"), Gateway: netip.MustParseAddr("10.90.1.1")},
			{Addr: netip.MustParsePrefix("fd00:1::5/64"), Gateway: netip.MustParseAddr("fd00:1::1")},
		}}
	r := resultOf(ep, "/run/netns/x")
	if len(r.IPs) != 2 || r.IPs[0].Address.String() != "10.90.1.5/24" || r.IPs[1].Address.String() != "fd00:1::5/64" ||
		r.IPs[1].Gateway.String() != "fd00:1::1" {
		t.Fatalf("IPs %+v", r.IPs)
	}
	if len(r.Routes) != 2 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[1].Dst.String() != "::/0" || r.Routes[1].GW.String() != "fd00:1::1" {
		t.Fatalf("routes %+v", r.Routes)
	}
	if !slices.Equal(r.DNS.Nameservers, []string{"10.90.1.1", "fd00:1::1"}) {
		t.Fatalf("name servers %v", r.DNS.Nameservers)
	}
}
