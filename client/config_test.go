package client_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
)

func TestDefaultConfig(t *testing.T) {
	t.Setenv(client.EnvEndpoints, "")
	if got := client.DefaultConfig().Endpoints; !reflect.DeepEqual(got, []string{"127.0.0.1:8001"}) {
		t.Errorf("default endpoints = %q", got)
	}
	t.Setenv(client.EnvEndpoints, " a:1, http://b:2 ,,https://c:3")
	cfg := client.DefaultConfig()
	if want := []string{"a:1", "http://b:2", "https://c:3"}; !reflect.DeepEqual(cfg.Endpoints, want) {
		t.Errorf("endpoints from env = %q, want %q", cfg.Endpoints, want)
	}
	if cfg.Timeout != client.DefaultTimeout || cfg.MaxRetries != client.DefaultMaxRetries {
		t.Errorf("DefaultConfig = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := []string{"127.0.0.1:8001"}
	tests := []struct {
		name string
		cfg  client.Config
		want string // substring of the error; "" for valid
	}{
		{"minimal", client.Config{Endpoints: ok}, ""},
		{"urls", client.Config{Endpoints: []string{"http://a:1", "https://b:2/", "[::1]:3"}}, ""},
		{"custom http client", client.Config{Endpoints: ok, HTTPClient: &http.Client{}}, ""},
		{"no endpoints", client.Config{}, "Config.Endpoints is empty"},
		{"empty endpoint", client.Config{Endpoints: []string{" "}}, "empty endpoint"},
		{"bad scheme", client.Config{Endpoints: []string{"ftp://a:1"}}, `scheme must be http or https, not "ftp"`},
		{"path", client.Config{Endpoints: []string{"http://a:1/v1"}}, "must not have a path"},
		{"query", client.Config{Endpoints: []string{"http://a:1?x=1"}}, "must not have a query"},
		{"no host", client.Config{Endpoints: []string{"http://"}}, "no host"},
		{"negative timeout", client.Config{Endpoints: ok, Timeout: -time.Second}, "Config.Timeout is negative (-1s)"},
		{"negative dial timeout", client.Config{Endpoints: ok, DialTimeout: -1}, "Config.DialTimeout is negative"},
		{"negative backoff", client.Config{Endpoints: ok, RetryBackoff: -1}, "Config.RetryBackoff is negative"},
		{"negative max backoff", client.Config{Endpoints: ok, MaxRetryBackoff: -1}, "Config.MaxRetryBackoff is negative"},
		{"backoff above max", client.Config{Endpoints: ok, RetryBackoff: 2 * time.Second},
			"Config.RetryBackoff (2s) is larger than Config.MaxRetryBackoff (1s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, nerr := client.New(tt.cfg); nerr == nil {
				t.Error("New accepted a config Validate rejects")
			}
		})
	}
}

func TestEndpointsNormalized(t *testing.T) {
	c, err := client.New(client.Config{Endpoints: []string{"a:1", "http://a:1/", "https://b:2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := []string{"http://a:1", "https://b:2"}; !reflect.DeepEqual(c.Endpoints(), want) {
		t.Errorf("Endpoints() = %q, want %q", c.Endpoints(), want)
	}
}
