package httpapi

import "net/http"

func (h *Handler) txn(w http.ResponseWriter, r *http.Request, _ string) {
	writeJSON(w, http.StatusNotImplemented, errorBody{Error: "not implemented", Code: "not_implemented"})
}

func (h *Handler) watch(w http.ResponseWriter, r *http.Request, key string) {
	writeJSON(w, http.StatusNotImplemented, errorBody{Error: "not implemented", Code: "not_implemented"})
}
