// Package h1 is a minimal HTTP/1.1 client for load generators: one
// keep-alive connection to one server, one request at a time, and no
// allocation per request once its buffers have grown, so that the client
// spends as little CPU as it can on each request (what wrk does).
//
// It speaks only as much of HTTP/1.1 (RFC 9112) as talking to a
// well-behaved server takes: a request is a request line, a Host header,
// a Content-Length header when there is a body, and the body; a response
// body is delimited by Content-Length, chunked transfer coding or the end
// of the connection. It does no TLS, proxies, redirects, compression,
// cookies, authentication, Expect: 100-continue or pipelining. Use
// net/http for anything else.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

const (
	// MaxHeaderBytes bounds the header section of a response: its status
	// line, header fields and any interim (1xx) responses before it, and
	// again its trailer section. A larger one is an error.
	MaxHeaderBytes = 64 << 10
	// MaxBodyBytes bounds a response body. A larger one is an error.
	MaxBodyBytes = 64 << 20

	// readBufferSize is the size of a connection's read buffer: large
	// enough for the whole response to a small request in one read.
	readBufferSize = 8 << 10
	// maxChunkLineBytes bounds the line that starts a chunk (its size
	// and extensions).
	maxChunkLineBytes = 4 << 10
)

var (
	errHeaderTooLarge = fmt.Errorf("response header section larger than %d bytes", MaxHeaderBytes)
	errBodyTooLarge   = fmt.Errorf("response body larger than %d bytes", MaxBodyBytes)
)

// Conn is one HTTP/1.1 connection to one server, kept alive from request
// to request. It dials lazily, on the first Do, and dials again on the
// next Do after the connection broke or the server closed it.
//
// A Conn is not safe for concurrent use: it is meant to be owned by one
// goroutine, which sends one request at a time.
type Conn struct {
	addr        string // host:port, also the Host header
	dialTimeout time.Duration

	nc       net.Conn      // nil when not connected
	br       *bufio.Reader // reads nc; kept across redials
	deadline time.Time     // the deadline set on nc
	served   int           // responses read whole on nc

	wbuf []byte // the request being sent
	line []byte // a header line longer than br's buffer
}

// New returns a Conn to addr (host:port) that has not dialed yet; Do
// dials. dialTimeout bounds each dial (zero: only the context of the
// request does).
func New(addr string, dialTimeout time.Duration) *Conn {
	return &Conn{addr: addr, dialTimeout: dialTimeout}
}

// Dial returns a Conn to addr (host:port), connected. timeout bounds this
// dial and any later one.
func Dial(addr string, timeout time.Duration) (*Conn, error) {
	c := New(addr, timeout)
	if err := c.dial(context.Background()); err != nil {
		return nil, err
	}
	return c, nil
}

// Addr returns the address the Conn dials.
func (c *Conn) Addr() string { return c.addr }

// Close closes the connection, if there is one. The Conn stays usable: a
// later Do dials again.
func (c *Conn) Close() error {
	if c.nc == nil {
		return nil
	}
	err := c.nc.Close()
	c.nc = nil
	c.served = 0
	c.deadline = time.Time{}
	return err
}

// Do sends one request and reads its response. path is the request
// target as it goes on the wire (already escaped, with any query). body,
// when not empty, is sent with a Content-Length header, which PUT and
// POST always have. The response body is appended to dst[:0] and
// returned: pass the returned slice back as dst to reuse its memory.
//
// Do honours ctx's deadline, on the dial and on every read and write, and
// fails at once when ctx is already done; it does not notice ctx being
// canceled while the request is in flight, only the deadline.
//
// Any error closes the connection (the next Do dials again) and names the
// server's address. Only one thing is retried: an idempotent request
// (RFC 9110: GET, HEAD, PUT, DELETE, OPTIONS, TRACE) that found a reused
// keep-alive connection closed by the server before any byte of the
// response came back is sent again, once, on a new connection. net/http
// does the same for GET, HEAD, OPTIONS and TRACE, but replays a PUT or a
// DELETE only with an Idempotency-Key: a server that applied one and died
// before answering sees it twice (for cairn, a second revision of the
// same value).
func (c *Conn) Do(ctx context.Context, method, path string, body []byte, dst []byte) (status int, respBody []byte, err error) {
	dst = dst[:0]
	if err := ctx.Err(); err != nil {
		return 0, dst, fmt.Errorf("h1: %s %s %s: %w", method, c.addr, path, err)
	}
	if err := c.buildRequest(method, path, body); err != nil {
		return 0, dst, err
	}
	head := method == "HEAD"
	status, respBody, retry, err := c.roundTrip(ctx, head, dst)
	if err != nil && retry && idempotent(method) && ctx.Err() == nil {
		status, respBody, _, err = c.roundTrip(ctx, head, dst)
	}
	return status, respBody, err
}

// idempotent reports whether a request with this method may be sent
// twice (RFC 9110, section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// buildRequest writes the request into c.wbuf.
func (c *Conn) buildRequest(method, path string, body []byte) error {
	if !validMethod(method) {
		return fmt.Errorf("h1: invalid method %q", method)
	}
	if !validTarget(path) {
		return fmt.Errorf("h1: invalid request target %q", path)
	}
	b := c.wbuf[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	b = append(b, "\r\n"...)
	if len(body) > 0 || method == "PUT" || method == "POST" {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	c.wbuf = b
	return nil
}

// validMethod reports whether m is an HTTP token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		switch ch := m[i]; {
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case ch > ' ' && ch < 0x7f && !isDelimiter(ch):
		default:
			return false
		}
	}
	return true
}

func isDelimiter(ch byte) bool {
	switch ch {
	case '"', '(', ')', ',', '/', ':', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}':
		return true
	}
	return false
}

// validTarget reports whether p can go on the request line: not empty,
// and no spaces or control characters.
func validTarget(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return false
		}
	}
	return true
}

// dial connects c.
func (c *Conn) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: c.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return c.wrap(ctx, "dial", err)
	}
	c.nc, c.served, c.deadline = nc, 0, time.Time{}
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, readBufferSize)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

// setDeadline makes nc's deadline ctx's, calling SetDeadline only when
// that changes it.
func (c *Conn) setDeadline(ctx context.Context) error {
	dl, _ := ctx.Deadline() // zero without a deadline
	if dl.Equal(c.deadline) {
		return nil
	}
	if err := c.nc.SetDeadline(dl); err != nil {
		return err
	}
	c.deadline = dl
	return nil
}

// roundTrip sends c.wbuf and reads the response, dialing first if need
// be. retry says that the error came from a reused connection the server
// had closed before answering, so that the request may be sent again.
func (c *Conn) roundTrip(ctx context.Context, head bool, dst []byte) (status int, body []byte, retry bool, err error) {
	if c.nc == nil {
		if err := c.dial(ctx); err != nil {
			return 0, dst, false, err
		}
	}
	reused := c.served > 0
	if err := c.setDeadline(ctx); err != nil {
		return 0, dst, false, c.fail(ctx, "set deadline", err)
	}
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return 0, dst, reused && connGone(err), c.fail(ctx, "write request", err)
	}
	// Wait for the first byte of the response apart, to tell a
	// connection the server had already closed from one that broke in
	// the middle of a response.
	if _, err := c.br.Peek(1); err != nil {
		return 0, dst, reused && connGone(err), c.fail(ctx, "read response", err)
	}
	status, body, keep, err := c.readResponse(head, dst)
	if err != nil {
		return 0, body, false, c.fail(ctx, "read response", err)
	}
	if keep {
		c.served++
	} else {
		_ = c.Close()
	}
	return status, body, false, nil
}

// connGone reports whether err says that the peer had closed the
// connection.
func connGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// fail closes the connection and returns err, wrapped.
func (c *Conn) fail(ctx context.Context, op string, err error) error {
	_ = c.Close()
	return c.wrap(ctx, op, err)
}

// wrap names the address and the step in err, and ctx's error if ctx is
// done, so that errors.Is(err, context.DeadlineExceeded) holds for a
// request that ran out of time.
func (c *Conn) wrap(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The connection's deadline can fire a little before ctx's timer.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("h1: %s %s: %w (%w)", op, c.addr, err, cerr)
	}
	return fmt.Errorf("h1: %s %s: %w", op, c.addr, err)
}

// readResponse reads a response, skipping interim (1xx) ones, and appends
// its body to dst. keep says whether the connection can carry another
// request.
func (c *Conn) readResponse(head bool, dst []byte) (status int, body []byte, keep bool, err error) {
	budget := MaxHeaderBytes
	for {
		line, err := c.readLine(&budget)
		if err != nil {
			return 0, dst, false, err
		}
		status, minor, err := parseStatusLine(line)
		if err != nil {
			return 0, dst, false, err
		}
		h, err := c.readHeader(&budget, minor)
		if err != nil {
			return 0, dst, false, err
		}
		switch {
		case status == 101:
			return 0, dst, false, errors.New("unexpected 101 Switching Protocols")
		case status < 200:
			continue // 100 Continue, 103 Early Hints...: the response follows
		}
		keep = !h.close
		switch {
		case head || status == 204 || status == 304:
			// No body, whatever the header says.
		case h.chunked:
			dst, err = c.readChunked(dst)
		case h.te:
			// A transfer coding other than chunked last: the body lasts
			// until the server closes the connection.
			keep = false
			dst, err = c.readToEOF(dst)
		case h.length >= 0:
			dst, err = c.readN(dst, h.length)
		default:
			keep = false
			dst, err = c.readToEOF(dst)
		}
		if err != nil {
			return 0, dst, false, err
		}
		return status, dst, keep, nil
	}
}

// parseStatusLine parses "HTTP/1.x 200 OK".
func parseStatusLine(line []byte) (status, minor int, err error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] < '0' || line[7] > '9' ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, fmt.Errorf("malformed status line %q", truncate(line))
	}
	for _, ch := range line[9:12] {
		if ch < '0' || ch > '9' {
			return 0, 0, fmt.Errorf("malformed status code in %q", truncate(line))
		}
		status = status*10 + int(ch-'0')
	}
	if status < 100 {
		return 0, 0, fmt.Errorf("malformed status code in %q", truncate(line))
	}
	return status, int(line[7] - '0'), nil
}

// header is what a response's header fields say about its framing.
type header struct {
	length  int64 // Content-Length, -1 if absent
	chunked bool  // Transfer-Encoding ends with chunked
	te      bool  // Transfer-Encoding is present
	close   bool  // the connection ends after this response
}

// readHeader reads header fields up to the empty line that ends them.
// minor is the HTTP/1 minor version of the response.
func (c *Conn) readHeader(budget *int, minor int) (header, error) {
	h := header{length: -1, close: minor == 0}
	for {
		line, err := c.readLine(budget)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return h, fmt.Errorf("obsolete line folding in header %q", truncate(line))
		}
		colon := -1
		for i, ch := range line {
			if ch == ':' {
				colon = i
				break
			}
			if ch <= ' ' || ch == 0x7f {
				break
			}
		}
		if colon <= 0 {
			return h, fmt.Errorf("malformed header line %q", truncate(line))
		}
		name, value := line[:colon], trimSpace(line[colon+1:])
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseLength(value)
			if !ok {
				return h, fmt.Errorf("invalid Content-Length %q", truncate(value))
			}
			if h.length >= 0 && h.length != n {
				return h, errors.New("conflicting Content-Length headers")
			}
			if n > MaxBodyBytes {
				return h, errBodyTooLarge
			}
			h.length = n
		case equalFold(name, "transfer-encoding"):
			h.te = true
			last := value
			for i := len(value) - 1; i >= 0; i-- {
				if value[i] == ',' {
					last = trimSpace(value[i+1:])
					break
				}
			}
			h.chunked = equalFold(last, "chunked")
		case equalFold(name, "connection"):
			for len(value) > 0 {
				tok := value
				if i := bytes.IndexByte(value, ','); i >= 0 {
					tok, value = value[:i], value[i+1:]
				} else {
					value = nil
				}
				tok = trimSpace(tok)
				switch {
				case equalFold(tok, "close"):
					h.close = true
				case minor == 0 && equalFold(tok, "keep-alive"):
					h.close = false
				}
			}
		}
	}
	if h.te && h.length >= 0 {
		return h, errors.New("response has both Transfer-Encoding and Content-Length")
	}
	return h, nil
}

// readLine reads a line, without its line ending, charging it to budget.
// The line is valid until the next read.
func (c *Conn) readLine(budget *int) ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		c.line = append(c.line[:0], line...)
		for err == bufio.ErrBufferFull && len(c.line) <= *budget {
			line, err = c.br.ReadSlice('\n')
			c.line = append(c.line, line...)
		}
		line = c.line
	}
	if *budget -= len(line); *budget < 0 {
		return nil, errHeaderTooLarge
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}

// readN appends n bytes of body to dst.
func (c *Conn) readN(dst []byte, n int64) ([]byte, error) {
	if n == 0 {
		return dst, nil
	}
	if int64(len(dst))+n > MaxBodyBytes {
		return dst, errBodyTooLarge
	}
	start := len(dst)
	dst = slices.Grow(dst, int(n))[:start+int(n)]
	if _, err := io.ReadFull(c.br, dst[start:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return dst[:start], err
	}
	return dst, nil
}

// readChunked appends a chunked body to dst and reads its trailer
// section.
func (c *Conn) readChunked(dst []byte) ([]byte, error) {
	for {
		budget := maxChunkLineBytes
		line, err := c.readLine(&budget)
		if err != nil {
			return dst, err
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return dst, fmt.Errorf("malformed chunk size line %q", truncate(line))
		}
		if size == 0 {
			break
		}
		if size > MaxBodyBytes-int64(len(dst)) {
			return dst, errBodyTooLarge
		}
		if dst, err = c.readN(dst, size); err != nil {
			return dst, err
		}
		budget = 2
		if line, err = c.readLine(&budget); err != nil || len(line) != 0 {
			if err == nil || err == errHeaderTooLarge {
				err = errors.New("chunk not followed by CRLF")
			}
			return dst, err
		}
	}
	// Trailer fields, ignored, up to the empty line.
	budget := MaxHeaderBytes
	for {
		line, err := c.readLine(&budget)
		if err != nil {
			return dst, err
		}
		if len(line) == 0 {
			return dst, nil
		}
	}
}

// readToEOF appends to dst everything up to the end of the connection.
func (c *Conn) readToEOF(dst []byte) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, max(readBufferSize, len(dst)))
		}
		room := dst[len(dst):min(cap(dst), MaxBodyBytes+1)]
		n, err := c.br.Read(room)
		dst = dst[:len(dst)+n]
		if len(dst) > MaxBodyBytes {
			return dst[:MaxBodyBytes], errBodyTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// parseLength parses a Content-Length value.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, true
}

// parseChunkSize parses the hexadecimal size at the start of a chunk
// line, before any extension.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for i, ch := range line {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'f':
			d = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			d = ch - 'A' + 10
		case ch == ';' || ch == ' ' || ch == '\t':
			rest := trimSpace(line[i:])
			return n, digits > 0 && (len(rest) == 0 || rest[0] == ';')
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}

// equalFold reports whether b equals lower, ignoring ASCII case; lower
// must be lower-case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		ch := b[i]
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != lower[i] {
			return false
		}
	}
	return true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// truncate shortens protocol text quoted in an error.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
