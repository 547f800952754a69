//go:build linux

package chaos

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds a history entry; ret < 0 marks an unknown outcome.
func op(client int, call, ret int64, in Input, out Output) porcupine.Operation {
	if ret < 0 {
		out.Unknown = true
		ret = call
	}
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func put(k, v string) Input                 { return Input{Kind: Put, Key: k, Value: v} }
func cas(k string, e int64, v string) Input { return Input{Kind: CAS, Key: k, Expect: e, Value: v} }
func get(k string) Input                    { return Input{Kind: Get, Key: k} }
func del(k string) Input                    { return Input{Kind: Delete, Key: k} }
func found(v string, rev int64) Output      { return Output{Found: true, Value: v, Rev: rev} }
func rev(r int64) Output                    { return Output{Rev: r} }

// TestModel checks the checker on small histories whose verdict is known.
func TestModel(t *testing.T) {
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, get("a"), found("x", 5)),
			op(0, 4, 5, cas("a", 5, "y"), rev(7)),
			op(0, 6, 7, get("a"), found("y", 7)),
			op(0, 8, 9, del("a"), Output{Rev: 8, Deleted: 1}),
			op(0, 10, 11, get("a"), Output{}),
			op(0, 12, 13, del("a"), Output{Rev: 8, Deleted: 0}),
		}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, put("a", "y"), rev(6)),
			op(1, 4, 5, get("a"), found("x", 5)),
		}, porcupine.Illegal},
		{"lost write", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(1, 4, 5, get("a"), Output{}),
		}, porcupine.Illegal},
		{"concurrent read may see either", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 10, put("a", "y"), rev(6)),
			op(1, 3, 4, get("a"), found("x", 5)),
			op(2, 5, 6, get("a"), found("y", 6)),
		}, porcupine.Ok},
		{"unknown write applied late", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, -1, put("a", "y"), Output{}),
			op(1, 3, 4, get("a"), found("x", 5)),
			op(1, 50, 51, get("a"), found("y", 9)),
		}, porcupine.Ok},
		{"unknown write never applied", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, -1, put("a", "y"), Output{}),
			op(1, 50, 51, get("a"), found("x", 5)),
		}, porcupine.Ok},
		{"unknown write cannot apply before it was sent", []porcupine.Operation{
			op(1, 0, 1, get("a"), found("y", 3)),
			op(0, 2, -1, put("a", "y"), Output{}),
		}, porcupine.Illegal},
		{"cas conflict", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, cas("a", 4, "y"), Output{Conflict: true, ModRev: 5}),
			op(0, 4, 5, cas("a", 0, "y"), Output{Conflict: true, ModRev: 5}),
			op(0, 6, 7, get("a"), found("x", 5)),
		}, porcupine.Ok},
		{"cas that should have failed", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, cas("a", 4, "y"), rev(6)),
		}, porcupine.Illegal},
		{"cas that should have succeeded", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, cas("a", 5, "y"), Output{Conflict: true, ModRev: 5}),
		}, porcupine.Illegal},
		{"cas after unknown put of unseen revision", []porcupine.Operation{
			op(0, 0, -1, put("a", "x"), Output{}),
			op(1, 5, 6, cas("a", 3, "y"), rev(7)),
			op(1, 8, 9, get("a"), found("y", 7)),
		}, porcupine.Ok},
		{"revision went backwards", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, put("a", "y"), rev(4)),
		}, porcupine.Illegal},
		{"keys are independent", []porcupine.Operation{
			op(0, 0, 1, put("a", "x"), rev(5)),
			op(0, 2, 3, put("b", "x"), rev(6)),
			op(1, 4, 5, get("b"), found("x", 6)),
			op(1, 6, 7, get("a"), found("x", 5)),
		}, porcupine.Ok},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, _, problems := Check(tc.history, 10*time.Second)
			if res != tc.want {
				t.Errorf("got %s, want %s (problems %v)\n%s", res, tc.want, problems, FormatHistory(tc.history))
			}
		})
	}
	// One value seen at two revisions is a contradiction by itself.
	_, problems := Prepare([]porcupine.Operation{
		op(0, 0, 1, put("a", "x"), rev(5)),
		op(1, 2, 3, get("a"), found("x", 6)),
	})
	if len(problems) != 1 {
		t.Errorf("Prepare found %v, want one contradiction", problems)
	}
}
