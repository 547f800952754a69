package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults used by DefaultConfig and by New for zero Config fields.
const (
	// DefaultEndpoint is the endpoint used when CAIRN_ENDPOINTS is unset.
	DefaultEndpoint = "127.0.0.1:8001"
	// DefaultTimeout bounds a single attempt (one request to one endpoint).
	// It is a little longer than the 3 s a server waits for a leader
	// during an election before answering 503 no_leader, so that such an
	// attempt ends with the server's answer (which is safe to retry, even
	// for a write) rather than a client-side timeout, which leaves a
	// write's outcome unknown; and well under the 5-10 s a whole call is
	// typically given, so that an endpoint that accepts connections but
	// never answers leaves time to try another one.
	DefaultTimeout = 4 * time.Second
	// DefaultDialTimeout bounds establishing one TCP connection.
	DefaultDialTimeout = 2 * time.Second
	// DefaultMaxRetries is how many times a call may be retried after its
	// first attempt.
	DefaultMaxRetries = 10
	// DefaultRetryBackoff is the first pause between retries once every
	// endpoint has been tried; it doubles up to DefaultMaxRetryBackoff.
	DefaultRetryBackoff = 50 * time.Millisecond
	// DefaultMaxRetryBackoff caps the pause between retries.
	DefaultMaxRetryBackoff = time.Second
)

// EnvEndpoints is the environment variable DefaultConfig reads the endpoints
// from: a comma-separated list of host:port pairs or URLs.
const EnvEndpoints = "CAIRN_ENDPOINTS"

// Config configures a Client. The zero value of every field except Endpoints
// selects a sensible default, so Config{Endpoints: []string{"host:8001"}} is
// a complete configuration.
type Config struct {
	// Endpoints lists the HTTP addresses of cluster members, as host:port
	// (plain HTTP is assumed) or as http:// or https:// URLs without a path.
	// Any member serves any request, so the list need not contain the
	// leader. At least one endpoint is required; there is no default here
	// (DefaultConfig fills it from CAIRN_ENDPOINTS).
	Endpoints []string

	// Timeout bounds a single attempt: one request to one endpoint, from
	// dialing until the whole response has been read (for a watch: until
	// the stream's headers arrive, and at least DefaultTimeout). A call may make several attempts and
	// is bounded as a whole only by its context, so keep Timeout well
	// below the context deadlines you use (a third of it lets a call try
	// three endpoints); a Timeout under the server's 3 s leader wait makes
	// writes during an election fail with an unknown outcome unless they
	// carry WithIdempotencyKey. Zero means DefaultTimeout (4s); negative
	// is invalid.
	Timeout time.Duration

	// DialTimeout bounds establishing a TCP connection to an endpoint.
	// Zero means DefaultDialTimeout (2s); negative is invalid. It is
	// ignored when HTTPClient is set.
	DialTimeout time.Duration

	// MaxRetries is how many times one call may be retried after its first
	// attempt, on this or another endpoint, when the failure allows it
	// (see the package documentation). Zero means DefaultMaxRetries (10);
	// a negative value disables retries, so each call makes one attempt.
	MaxRetries int

	// RetryBackoff is the pause before a retry once every endpoint has
	// been tried in the current call; it doubles on each further retry up
	// to MaxRetryBackoff. Zero means DefaultRetryBackoff (50ms); negative
	// is invalid.
	RetryBackoff time.Duration

	// MaxRetryBackoff caps the pause between retries. Zero means
	// DefaultMaxRetryBackoff (1s); negative is invalid, and it must not be
	// smaller than RetryBackoff.
	MaxRetryBackoff time.Duration

	// HTTPClient overrides the HTTP client that sends every request, for
	// example to configure TLS or a proxy; the client never follows
	// redirects, whatever its CheckRedirect says. Its Timeout should be
	// zero: a non-zero one also cuts every watch stream that outlives it.
	// Nil means a private *http.Client with
	// its own keep-alive http.Transport.
	HTTPClient *http.Client
}

// DefaultConfig returns a Config with every default filled in and the
// endpoints taken from the CAIRN_ENDPOINTS environment variable, or
// DefaultEndpoint when it is unset or empty.
func DefaultConfig() Config {
	eps := SplitEndpoints(os.Getenv(EnvEndpoints))
	if len(eps) == 0 {
		eps = []string{DefaultEndpoint}
	}
	return Config{
		Endpoints:       eps,
		Timeout:         DefaultTimeout,
		DialTimeout:     DefaultDialTimeout,
		MaxRetries:      DefaultMaxRetries,
		RetryBackoff:    DefaultRetryBackoff,
		MaxRetryBackoff: DefaultMaxRetryBackoff,
	}
}

// SplitEndpoints splits a comma-separated endpoint list such as the value of
// CAIRN_ENDPOINTS, trimming spaces and dropping empty entries.
func SplitEndpoints(s string) []string {
	var eps []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

// Validate reports the first problem with c, or nil if New would accept it.
// Zero fields are valid: they select defaults.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("client: Config.Endpoints is empty: give at least one host:port")
	}
	for _, e := range c.Endpoints {
		if _, err := parseEndpoint(e); err != nil {
			return err
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("client: Config.Timeout is negative (%v)", c.Timeout)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("client: Config.DialTimeout is negative (%v)", c.DialTimeout)
	}
	if c.RetryBackoff < 0 {
		return fmt.Errorf("client: Config.RetryBackoff is negative (%v)", c.RetryBackoff)
	}
	if c.MaxRetryBackoff < 0 {
		return fmt.Errorf("client: Config.MaxRetryBackoff is negative (%v)", c.MaxRetryBackoff)
	}
	d := c.withDefaults()
	if d.RetryBackoff > d.MaxRetryBackoff {
		return fmt.Errorf("client: Config.RetryBackoff (%v) is larger than Config.MaxRetryBackoff (%v)",
			d.RetryBackoff, d.MaxRetryBackoff)
	}
	return nil
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	return c
}

// parseEndpoint turns "host:port" or "http(s)://host:port" into a base URL
// without a trailing slash.
func parseEndpoint(e string) (string, error) {
	raw := strings.TrimSpace(e)
	if raw == "" {
		return "", errors.New("client: empty endpoint in Config.Endpoints")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("client: endpoint %q: %v", e, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("client: endpoint %q: scheme must be http or https, not %q", e, u.Scheme)
	case u.Host == "":
		return "", fmt.Errorf("client: endpoint %q: no host", e)
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("client: endpoint %q: must not have a path (%q)", e, u.Path)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("client: endpoint %q: must not have a query or fragment", e)
	case u.User != nil:
		return "", fmt.Errorf("client: endpoint %q: must not contain user information", e)
	}
	return u.Scheme + "://" + u.Host, nil
}
