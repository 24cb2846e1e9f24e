package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pontoon/internal/model"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/pontoon/pontoon.sock"

// ErrUnavailable means the daemon could not be reached or is not ready.
var ErrUnavailable = errors.New("daemon unavailable")

// Error is an error answer of the API. It matches the model's error kinds
// with errors.Is, so callers handle API errors as engine errors.
type Error struct {
	Status int
	Body   ErrorBody
}

func (e *Error) Error() string { return e.Body.Error }

// Is maps the API's error kinds to model's sentinel errors.
func (e *Error) Is(target error) bool {
	switch e.Body.Kind {
	case "invalid":
		return target == model.ErrInvalid
	case "not_found":
		return target == model.ErrNotFound
	case "conflict":
		return target == model.ErrConflict
	case "exhausted":
		return target == model.ErrExhausted
	case "unavailable":
		return target == ErrUnavailable
	}
	return false
}

// Client talks to the daemon over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon at socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// A runtime attaching 32 at a time keeps its 32 connections
		// instead of dialing half of them again for every request.
		MaxIdleConnsPerHost: 64,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// Socket returns the socket path the client uses.
func (c *Client) Socket() string { return c.socket }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://pontoon"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w: cannot reach the pontoon daemon at %s: start it with `pontoon daemon`, or point --socket / PONTOON_SOCKET at its socket", ErrUnavailable, c.socket)
		}
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			return permissionError(c.socket, err)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Body) != nil || e.Body.Error == "" {
			e.Body = ErrorBody{Error: fmt.Sprintf("daemon answered %s", resp.Status), Kind: "internal"}
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// ErrPermission means the daemon's socket refused this user (it matches
// fs.ErrPermission too).
var ErrPermission = errors.New("permission denied")

type permError struct {
	msg string
	err error
}

func (e *permError) Error() string { return e.msg }
func (e *permError) Unwrap() error { return e.err }
func (e *permError) Is(target error) bool {
	return target == ErrPermission || target == fs.ErrPermission
}

// permissionError says that the socket refused this user, who may use it,
// and what to do: the daemon's socket is mode 0660, root's unless the
// daemon was started with --group.
func permissionError(socket string, err error) error {
	var who, todo string
	fi, serr := os.Stat(socket)
	var gid uint32
	if serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			gid = st.Gid
		}
	}
	switch {
	case serr != nil:
		who = "a directory on its path is closed to you"
		todo = "run the command as root"
	case gid != 0:
		group := strconv.Itoa(int(gid))
		if g, err := user.LookupGroupId(group); err == nil {
			group = g.Name
		}
		who = fmt.Sprintf("mode %04o, group %s", fi.Mode().Perm(), group)
		todo = fmt.Sprintf("run the command as root, or join group %s (`usermod -aG %s $USER`, then log in again)", group, group)
	default:
		who = fmt.Sprintf("mode %04o, root's", fi.Mode().Perm())
		todo = "run the command as root, or start the daemon with --group GROUP and join that group"
	}
	return &permError{
		msg: fmt.Sprintf("permission denied on the pontoon daemon's socket %s (%s): %s", socket, who, todo),
		err: err,
	}
}

// Status asks whether the daemon is up and ready.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
			return &st, fmt.Errorf("%w: the daemon is starting", ErrUnavailable)
		}
		return nil, err
	}
	return &st, nil
}

func (c *Client) Networks(ctx context.Context) ([]*model.NetworkInfo, error) {
	var v []*model.NetworkInfo
	return v, c.do(ctx, http.MethodGet, "/v1/networks", nil, &v)
}

func (c *Client) Network(ctx context.Context, name string) (*model.NetworkInfo, error) {
	var v model.NetworkInfo
	return &v, c.do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(name), nil, &v)
}

// NetworkFDB reads what a network's bridge (and an overlay's VXLAN
// device) on the daemon's host has learned, and the host's neighbours on
// it.
func (c *Client) NetworkFDB(ctx context.Context, name string) (*model.NetworkFDB, error) {
	var v model.NetworkFDB
	return &v, c.do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(name)+"/fdb", nil, &v)
}

func (c *Client) CreateNetwork(ctx context.Context, spec model.NetworkSpec) (*model.Network, error) {
	var v model.Network
	return &v, c.do(ctx, http.MethodPost, "/v1/networks", spec, &v)
}

func (c *Client) RemoveNetwork(ctx context.Context, name string, force bool) error {
	q := ""
	if force {
		q = "?force=true"
	}
	return c.do(ctx, http.MethodDelete, "/v1/networks/"+url.PathEscape(name)+q, nil, nil)
}

func (c *Client) Connect(ctx context.Context, network string, req ConnectRequest) (*model.Endpoint, error) {
	var v model.Endpoint
	return &v, c.do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(network)+"/connect", req, &v)
}

func (c *Client) Disconnect(ctx context.Context, network, sandbox string) error {
	return c.do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(network)+"/disconnect", DisconnectRequest{Sandbox: sandbox}, nil)
}

func (c *Client) Sandboxes(ctx context.Context) ([]*model.SandboxInfo, error) {
	var v []*model.SandboxInfo
	return v, c.do(ctx, http.MethodGet, "/v1/sandboxes", nil, &v)
}

func (c *Client) Sandbox(ctx context.Context, name string) (*model.SandboxInfo, error) {
	var v model.SandboxInfo
	return &v, c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(name), nil, &v)
}

func (c *Client) CreateSandbox(ctx context.Context, spec model.SandboxSpec) (*model.SandboxInfo, error) {
	var v model.SandboxInfo
	return &v, c.do(ctx, http.MethodPost, "/v1/sandboxes", spec, &v)
}

func (c *Client) RemoveSandbox(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(name), nil, nil)
}

// CheckSandbox asks the daemon to compare a sandbox's kernel state with its
// records; an empty answer means no drift.
func (c *Client) CheckSandbox(ctx context.Context, name string) ([]Problem, error) {
	var v []Problem
	return v, c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(name)+"/check", nil, &v)
}

// Doctor asks the daemon to check the host (it changes nothing).
func (c *Client) Doctor(ctx context.Context) ([]Finding, error) {
	var v []Finding
	return v, c.do(ctx, http.MethodGet, "/v1/doctor", nil, &v)
}

// Ports lists published ports, of one sandbox when sandbox is not "".
func (c *Client) Ports(ctx context.Context, sandbox string) ([]model.PortInfo, error) {
	var v []model.PortInfo
	q := ""
	if sandbox != "" {
		q = "?sandbox=" + url.QueryEscape(sandbox)
	}
	return v, c.do(ctx, http.MethodGet, "/v1/ports"+q, nil, &v)
}

// EventQuery selects events: after the event with ID Since, or at or after
// SinceTime; only these networks, sandboxes and kinds (empty: all); Follow
// keeps the stream open for new events.
type EventQuery struct {
	Since     uint64
	SinceTime time.Time
	Networks  []string
	Sandboxes []string
	Kinds     []string
	Follow    bool
}

// Events calls fn for each event GET /v1/events streams, until the stream
// ends (without Follow: after the kept events), ctx ends or fn returns an
// error.
func (c *Client) Events(ctx context.Context, q EventQuery, fn func(model.Event) error) error {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", strconv.FormatUint(q.Since, 10))
	}
	if !q.SinceTime.IsZero() {
		v.Set("since_time", q.SinceTime.UTC().Format(time.RFC3339Nano))
	}
	if q.Follow {
		v.Set("follow", "true")
	}
	for _, n := range q.Networks {
		v.Add("network", n)
	}
	for _, s := range q.Sandboxes {
		v.Add("sandbox", s)
	}
	for _, k := range q.Kinds {
		v.Add("kind", k)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pontoon/v1/events?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	// No overall timeout: a followed stream lasts as long as the reader.
	resp, err := (&http.Client{Transport: c.hc.Transport}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		var body ErrorBody
		if json.Unmarshal(data, &body) != nil {
			body = ErrorBody{Error: strings.TrimSpace(string(data)), Kind: "internal"}
		}
		return &Error{Status: resp.StatusCode, Body: body}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev model.Event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read events: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// Nodes lists the cluster's nodes (GET /v1/nodes).
func (c *Client) Nodes(ctx context.Context) ([]model.ClusterNode, error) {
	var v []model.ClusterNode
	return v, c.do(ctx, http.MethodGet, "/v1/nodes", nil, &v)
}

// Node returns one node of the cluster (GET /v1/nodes/{name}).
func (c *Client) Node(ctx context.Context, name string) (*model.ClusterNodeInfo, error) {
	var v model.ClusterNodeInfo
	return &v, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(name), nil, &v)
}

// ForgetNode releases what a dead node holds in the cluster (DELETE
// /v1/nodes/{name}).
func (c *Client) ForgetNode(ctx context.Context, name string) (*model.ForgottenNode, error) {
	var v model.ForgottenNode
	return &v, c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(name), nil, &v)
}

// Topology returns the picture of the host (GET /v1/topology).
func (c *Client) Topology(ctx context.Context) (*model.Topology, error) {
	var t model.Topology
	return &t, c.do(ctx, http.MethodGet, "/v1/topology", nil, &t)
}

// CNIAdd is a CNI ADD of one interface of a container (one request; see
// docs/api.md).
func (c *Client) CNIAdd(ctx context.Context, req CNIAddRequest) (*CNIAddResult, error) {
	var v CNIAddResult
	return &v, c.do(ctx, "POST", "/v1/cni/add", req, &v)
}

// CNIDel is a CNI DEL of one interface of a container; a container with no
// attachment is success.
func (c *Client) CNIDel(ctx context.Context, req CNIDelRequest) error {
	return c.do(ctx, "POST", "/v1/cni/del", req, nil)
}
