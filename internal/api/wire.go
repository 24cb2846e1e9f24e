package api

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The client's side of HTTP/1.1 over the daemon's unix socket.
//
// net/http's client is not used: it links crypto/tls, crypto/x509 and the
// rest of net/http, whose initialisation and page faults cost every
// process that imports this package ~0.6 ms at start-up, before it does
// anything (measured for the CNI plugin, a process per CNI verb:
// docs/benchmarks.md, issue 10). The daemon's server is net/http's; a
// client needs only a few of HTTP/1.1's parts for its answers — a status
// line, headers, and a body of Content-Length bytes or chunked, or read to
// the end when the server closes the connection — and keeps connections
// alive for the next request.

// maxBody bounds an answer's body.
const maxBody = 256 << 20

// maxIdle bounds the connections a Client keeps open between requests.
const maxIdle = 16

// wireConn is one connection to the daemon.
type wireConn struct {
	c net.Conn
	r *bufio.Reader
}

// transport dials the daemon and pools idle connections.
type transport struct {
	socket string
	mu     sync.Mutex
	idle   []*wireConn
}

// get returns an idle connection that the daemon did not close meanwhile,
// or a new one.
func (t *transport) get(ctx context.Context) (*wireConn, error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		wc := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if wc.alive() {
			return wc, nil
		}
		wc.c.Close()
	}
	return t.dial(ctx)
}

// dial opens a new connection.
func (t *transport) dial(ctx context.Context) (*wireConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", t.socket)
	if err != nil {
		return nil, err
	}
	return &wireConn{c: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// put keeps a connection for the next request.
func (t *transport) put(wc *wireConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle) >= maxIdle {
		wc.c.Close()
		return
	}
	t.idle = append(t.idle, wc)
}

// alive reports whether an idle connection is still open and has nothing
// unread: a daemon that stopped closed it, and would never answer. It
// peeks without waiting (a read with a deadline in the past would not
// even try).
func (wc *wireConn) alive() bool {
	if wc.r.Buffered() > 0 {
		return false
	}
	sc, ok := wc.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN // nothing to read and not closed
		return true
	}); err != nil {
		return false
	}
	return alive
}

// roundTrip sends one request and reads its answer: the status code, the
// body, and whether the connection may carry another request.
func (wc *wireConn) roundTrip(ctx context.Context, method, path string, body []byte) (int, []byte, bool, error) {
	deadline, _ := ctx.Deadline()
	if err := wc.c.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	// A cancelled context unblocks the read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = wc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wc.send(method, path, body); err != nil {
		return 0, nil, false, ctxErr(ctx, err)
	}
	code, r, keep, err := wc.answer(method)
	if err != nil {
		return 0, nil, false, ctxErr(ctx, err)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err == nil && len(data) > maxBody {
		err = fmt.Errorf("the answer is larger than %d bytes", maxBody)
	}
	if err != nil {
		return 0, nil, false, ctxErr(ctx, fmt.Errorf("read the daemon's answer: %w", err))
	}
	return code, data, keep, nil
}

// send writes one request.
func (wc *wireConn) send(method, path string, body []byte) error {
	var req bytes.Buffer
	req.Grow(len(body) + 128)
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: pontoon\r\nUser-Agent: pontoon\r\n", method, path)
	if body != nil {
		req.WriteString("Content-Type: application/json\r\n")
	}
	fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n", len(body))
	req.Write(body)
	_, err := wc.c.Write(req.Bytes())
	return err
}

// answer reads an answer's status line and headers, and returns its status
// code, a reader of its body, and whether the connection may carry another
// request once the body is read. The body is read as it arrives (a stream
// of events is one long chunked body).
func (wc *wireConn) answer(method string) (int, io.Reader, bool, error) {
	tp := textproto.NewReader(wc.r)
	line, err := tp.ReadLine()
	if err != nil {
		return 0, nil, false, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	codeText, _, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || code < 100 || code > 999 {
		return 0, nil, false, fmt.Errorf("the daemon's answer does not start with an HTTP status line: %q", line)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, nil, false, fmt.Errorf("read the headers of the daemon's answer: %w", err)
	}
	keep := proto == "HTTP/1.1" && !strings.EqualFold(hdr.Get("Connection"), "close")
	switch {
	case method == "HEAD" || code == 204 || code == 304:
		return code, strings.NewReader(""), keep, nil
	case strings.EqualFold(hdr.Get("Transfer-Encoding"), "chunked"):
		return code, &chunkedReader{tp: tp}, keep, nil
	case hdr.Get("Content-Length") != "":
		n, err := strconv.ParseInt(hdr.Get("Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return 0, nil, false, fmt.Errorf("the daemon's answer has a bad Content-Length %q", hdr.Get("Content-Length"))
		}
		return code, &exactReader{r: wc.r, left: n}, keep, nil
	}
	// The body ends where the daemon closes the connection.
	return code, wc.r, false, nil
}

// exactReader reads a body of Content-Length bytes; a connection that
// ends before is an error.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// chunkedReader reads a body in chunked transfer coding, and its trailer,
// chunk by chunk as they arrive.
type chunkedReader struct {
	tp      *textproto.Reader
	left    uint64 // bytes left in the current chunk
	started bool   // a chunk was read: a CRLF ends it
	done    bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if c.started {
			if line, err := c.tp.ReadLine(); err != nil || line != "" {
				return 0, fmt.Errorf("chunk not followed by CRLF: %q %v", line, err)
			}
		}
		line, err := c.tp.ReadLine()
		if err != nil {
			return 0, unexpected(err)
		}
		sizeText, _, _ := strings.Cut(line, ";")
		size, err := strconv.ParseUint(strings.TrimSpace(sizeText), 16, 63)
		if err != nil {
			return 0, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			for { // trailer fields, up to an empty line
				line, err := c.tp.ReadLine()
				if err != nil {
					return 0, unexpected(err)
				}
				if line == "" {
					break
				}
			}
			c.done = true
			return 0, io.EOF
		}
		c.left, c.started = size, true
	}
	if uint64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.tp.R.Read(p)
	c.left -= uint64(n)
	return n, unexpected(err)
}

// unexpected turns the end of the connection inside a body into an error.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ctxErr names the context's end as the cause when it ended the I/O.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	// The connection's deadline is the context's: it may fire first.
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}
