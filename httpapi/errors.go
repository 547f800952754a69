package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
)

// Errors for bad requests; handlers wrap them with details.
var (
	// ErrInvalidArgument marks a bad query parameter or field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrMalformedJSON marks a request body that is not the JSON expected.
	ErrMalformedJSON = errors.New("malformed JSON")
	// ErrTooLarge marks a request body over the limit.
	ErrTooLarge = errors.New("request too large")
	// ErrNotReady marks a node that has not caught up yet.
	ErrNotReady = errors.New("node not ready")
	// ErrTooManyHops marks a request forwarded too many times.
	ErrTooManyHops = errors.New("forwarded too many times; the cluster's view of its leader is changing")
)

// apiError is an error with its HTTP status and code fixed.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// errorBody is the JSON of every error.
type errorBody struct {
	Error          string `json:"error"`
	Code           string `json:"code"`
	ModRevision    *int64 `json:"mod_revision,omitempty"`
	OldestRevision *int64 `json:"oldest_revision,omitempty"`
}

// classify maps an error to its status and code. It is the one place that
// knows how errors look over HTTP.
func classify(err error) (int, errorBody) {
	b := errorBody{Error: err.Error()}
	var api *apiError
	var conflict *store.ConflictError
	var compacted *store.CompactedError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &api):
		b.Code = api.code
		return api.status, b
	case errors.As(err, &conflict):
		b.Code, b.ModRevision = "cas_conflict", &conflict.ModRevision
		return http.StatusConflict, b
	case errors.As(err, &compacted):
		b.Code, b.OldestRevision = "compacted", &compacted.Oldest
		return http.StatusGone, b
	case errors.As(err, &tooBig), errors.Is(err, ErrTooLarge):
		b.Code = "too_large"
		if tooBig != nil {
			b.Error = "request body too large: the limit is " + itoa(tooBig.Limit-1) + " bytes"
		}
		return http.StatusRequestEntityTooLarge, b
	case errors.Is(err, store.ErrInvalidKey):
		b.Code = "invalid_key"
		return http.StatusBadRequest, b
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, store.ErrInvalidCommand),
		errors.Is(err, raftnode.ErrInvalidMember), errors.Is(err, raftnode.ErrLastMember):
		b.Code = "invalid_argument"
		return http.StatusBadRequest, b
	case errors.Is(err, ErrMalformedJSON):
		b.Code = "malformed_json"
		return http.StatusBadRequest, b
	case errors.Is(err, store.ErrNotFound):
		b.Code = "key_not_found"
		return http.StatusNotFound, b
	case errors.Is(err, raftnode.ErrUnknownMember):
		b.Code = "member_not_found"
		return http.StatusNotFound, b
	case errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, raftnode.ErrNoLeader),
		errors.Is(err, raftnode.ErrShutdown), errors.Is(err, ErrTooManyHops):
		b.Code = "no_leader"
		return http.StatusServiceUnavailable, b
	case errors.Is(err, ErrNotReady):
		b.Code = "not_ready"
		return http.StatusServiceUnavailable, b
	case errors.Is(err, raftnode.ErrTimeout), errors.Is(err, raftnode.ErrUnknownOutcome):
		b.Code = "timeout"
		return http.StatusGatewayTimeout, b
	}
	b.Code = "internal"
	return http.StatusInternalServerError, b
}

// writeError writes err as the JSON error body with its status.
func (h *Handler) writeError(w http.ResponseWriter, err error) {
	status, body := classify(err)
	if status == http.StatusInternalServerError {
		h.log.Error("internal error", "err", err)
	}
	writeJSON(w, status, body)
}

// jsonBytes is v as one line of JSON.
func jsonBytes(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := jsonBytes(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode response","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func badArg(format string) error {
	return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: format}
}
