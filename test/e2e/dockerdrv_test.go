package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"pontoon/internal/model"
	"pontoon/internal/testutil"
)

// pontoon as Docker's network and IPAM driver, driven by a real dockerd
// (docker.io 20.10) in the test's namespaces: a network created with
// `-d pontoon --ipam-driver pontoon`, containers on it reaching each other
// by name and alias, a published port from the outside, connect and
// disconnect, and everything gone from pontoon when Docker removes it.
func TestDockerDriver(t *testing.T) {
	d := newDocker(t)
	h := d.e.h
	h.Stop()
	h.Start(d.pontoonArgs()...)

	d.run("network", "create", "-d", "pontoon", "--ipam-driver", "pontoon", "--subnet", "10.94.3.0/24", "app")
	nid := d.run("network", "inspect", "-f", "{{.Id}}", "app")
	var nets []*model.NetworkInfo
	if err := json.Unmarshal([]byte(h.P("network", "ls", "--format", "json")), &nets); err != nil {
		t.Fatal(err)
	}
	var pn *model.NetworkInfo
	for _, n := range nets {
		if n.Labels["docker.network.id"] == nid {
			pn = n
		}
	}
	if pn == nil || pn.SubnetString() != "10.94.3.0/24" || pn.Subnets[0].Gateway.String() != "10.94.3.1" {
		t.Fatalf("pontoon's network for Docker's app: %+v", pn)
	}

	d.run("run", "-d", "--stop-timeout", "1", "--network", "app", "--name", "web", "--network-alias", "db", "-p", "8094:80", dockerImage,
		"sh", "-c", "mkdir -p /srv && echo hello from web > /srv/index.html && exec httpd -f -p 80 -h /srv")
	webIP := d.run("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web")
	if !strings.HasPrefix(webIP, "10.94.3.") {
		logs, _ := d.try("logs", "web")
		ps, _ := d.try("ps", "-a")
		t.Fatalf("web's address: %q\n%s\n%s", webIP, ps, logs)
	}
	// pontoon made and holds the interface: a sandbox for the container,
	// an endpoint with Docker's address.
	var sbs []*model.SandboxInfo
	if err := json.Unmarshal([]byte(h.P("sandbox", "ls", "--format", "json")), &sbs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sb := range sbs {
		for _, ep := range sb.Endpoints {
			if ep.Network == pn.Name && ep.FirstIP().String() == webIP && strings.HasPrefix(sb.Name, "docker-") {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no pontoon sandbox holds %s:\n%s", webIP, h.P("sandbox", "ls"))
	}
	// With the container's ID and name, from Docker's API.
	webID := d.run("inspect", "-f", "{{.Id}}", "web")
	if res, ok := within(10*time.Second, func() (string, bool) {
		var sbs []*model.SandboxInfo
		out := h.P("sandbox", "ls", "--format", "json")
		_ = json.Unmarshal([]byte(out), &sbs)
		for _, sb := range sbs {
			if sb.ContainerID == webID && sb.Labels["docker.container.name"] == "web" {
				return out, true
			}
		}
		return out, false
	}); !ok {
		t.Errorf("no sandbox with web's container ID %s and name:\n%s", webID, res)
	}
	if out := h.P("sandbox", "ls"); !strings.Contains(out, webID[:12]+" (web)") {
		t.Errorf("sandbox ls does not show web:\n%s", out)
	}
	// Containers reach each other by name and alias (Docker's resolver,
	// from the addresses pontoon's IPAM handed out), and the outside.
	out := d.run("run", "--rm", "--network", "app", dockerImage, "sh", "-c",
		"ping -c1 -W2 web && wget -qO- http://db/ && ping -c1 -W2 "+RouterIP)
	if !strings.Contains(out, "hello from web") {
		t.Errorf("by name and alias:\n%s", out)
	}
	// The published port, from the outside world.
	if res, ok := within(5*time.Second, func() (string, bool) {
		o, err := httpGetIn(t, h.Outside, "http://"+HostUplinkIP+":8094/")
		if err != nil {
			o += err.Error()
		}
		return o, err == nil && strings.Contains(o, "hello from web")
	}); !ok {
		t.Errorf("published port from the outside: %s\n%s", res, h.P("port"))
	}
	if p := h.P("port"); !strings.Contains(p, "8094") {
		t.Errorf("pontoon port: %s", p)
	}

	if out, err := h.TryP("doctor"); err != nil {
		t.Errorf("doctor with Docker's containers: %v\n%s", err, out)
	}
	// connect and disconnect.
	d.run("network", "create", "-d", "pontoon", "--ipam-driver", "pontoon", "--subnet", "10.94.4.0/24", "back")
	d.run("network", "connect", "back", "web")
	if ip := d.run("inspect", "-f", "{{.NetworkSettings.Networks.back.IPAddress}}", "web"); !strings.HasPrefix(ip, "10.94.4.") {
		t.Errorf("web on back: %q", ip)
	}
	out = d.run("run", "--rm", "--network", "back", dockerImage, "ping", "-c1", "-W2", "web")
	if !strings.Contains(out, "1 packets received") {
		t.Errorf("ping web on back:\n%s", out)
	}
	d.run("network", "disconnect", "back", "web")
	if _, err := d.try("run", "--rm", "--network", "back", dockerImage, "ping", "-c1", "-W1", webIP); err == nil {
		t.Error("web reached on back after disconnect")
	}

	// Restarts, in either order, lose nothing. pontoon first: the
	// running container keeps its network, and Docker's later calls find
	// the driver's state.
	reach := func(when string) {
		t.Helper()
		out := d.run("run", "--rm", "--network", "app", dockerImage, "wget", "-qO-", "http://web/")
		if !strings.Contains(out, "hello from web") {
			t.Errorf("%s: web by name: %s", when, out)
		}
		if res, ok := within(5*time.Second, func() (string, bool) {
			o, err := httpGetIn(t, h.Outside, "http://"+HostUplinkIP+":8094/")
			return o, err == nil && strings.Contains(o, "hello from web")
		}); !ok {
			t.Errorf("%s: published port: %s", when, res)
		}
	}
	h.Stop()
	h.Start(d.pontoonArgs()...)
	reach("after pontoon restarted")
	// Then dockerd: it stops its containers (Leave) and starts them
	// again when asked (a new Join).
	d.stopDaemon()
	d.startDaemon()
	d.run("start", "web")
	reach("after dockerd restarted")
	// The other order: dockerd first, then pontoon, both with the
	// container running through them.
	d.stopDaemon()
	h.Stop()
	d.startDaemon()
	h.Start(d.pontoonArgs()...)
	d.run("start", "web")
	reach("after dockerd, then pontoon, restarted")
	if n := strings.Count(h.P("sandbox", "ls", "-q"), "docker-"); n != 1 {
		t.Errorf("%d docker sandboxes after the restarts, want 1 (web's):\n%s", n, h.P("sandbox", "ls"))
	}

	// Removal: the container's sandbox and address go, then the network.
	d.run("rm", "-f", "web")
	if res, ok := within(5*time.Second, func() (string, bool) {
		o := h.P("sandbox", "ls", "-q")
		return o, !strings.Contains(o, "docker-")
	}); !ok {
		t.Errorf("docker sandboxes left: %s", res)
	}
	d.run("network", "rm", "app", "back")
	if out := h.P("network", "ls", "-q"); strings.Contains(out, "docker-") {
		t.Errorf("networks left: %s", out)
	}
}

// httpGetIn fetches url from inside the namespace at ns (the socket is
// made on a thread in it) and returns the body.
func httpGetIn(t *testing.T, ns, url string) (string, error) {
	t.Helper()
	var conn net.Conn
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	if err := testutil.InNetns(t, ns, func() (err error) {
		conn, err = net.DialTimeout("tcp", host, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", host); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}
