//go:build linux

package chaos

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is the kind of a recorded operation.
type Kind uint8

// The operations clients make.
const (
	Get Kind = iota
	Put
	Delete
	CAS // PUT ?cas=Expect
)

func (k Kind) String() string {
	return [...]string{"get", "put", "delete", "cas"}[k]
}

// Input is what a client asked for.
type Input struct {
	Kind Kind
	Key  string
	// Value is the value written by Put and CAS. Every written value is
	// unique in a history, so it names its write.
	Value string
	// Expect is CAS's expected mod revision (0: only if absent).
	Expect int64
	// Rev is filled in by the checker for writes of unknown outcome: the
	// mod revision their value was seen with, or -1 if it never was.
	Rev int64
}

// Output is what the client learned.
type Output struct {
	// Unknown marks a write whose outcome is unknown (timeout, transport
	// error, 5xx): it may or may not have taken effect, at any time after
	// it was sent.
	Unknown bool
	// Found and Value are a Get's answer.
	Found bool
	Value string
	// Rev is the mod revision a Get saw, or the revision a Put, CAS or
	// Delete produced.
	Rev int64
	// Conflict marks a CAS answered 409; ModRev is the key's mod revision
	// the server reported then (0: absent).
	Conflict bool
	ModRev   int64
	// Deleted is how many keys a Delete removed.
	Deleted int64
}

// kvState is one key's state in the model. Rev is its mod revision (0
// when absent), or -1 when it is not known (the key was last written by a
// write of unknown outcome whose value nobody saw).
type kvState struct {
	Present bool
	Value   string
	Rev     int64
}

func (s kvState) String() string {
	if !s.Present {
		return "absent"
	}
	if s.Rev < 0 {
		return fmt.Sprintf("%q @?", s.Value)
	}
	return fmt.Sprintf("%q @%d", s.Value, s.Rev)
}

// written is the state after a write of value v at revision rev.
func written(v string, rev int64) kvState { return kvState{Present: true, Value: v, Rev: rev} }

// step is the model of one key of cairn: every state the operation can
// lead to from s, none if the output is impossible.
func step(s kvState, in Input, out Output) []kvState {
	newer := func(rev int64) bool { return s.Rev < 0 || rev > s.Rev }
	switch in.Kind {
	case Get:
		if out.Found != s.Present {
			return nil
		}
		if !out.Found {
			return []kvState{s}
		}
		if out.Value != s.Value || (s.Rev >= 0 && out.Rev != s.Rev) {
			return nil
		}
		return []kvState{written(s.Value, out.Rev)}
	case Put:
		if out.Unknown {
			return []kvState{written(in.Value, in.Rev)}
		}
		if !newer(out.Rev) {
			return nil
		}
		return []kvState{written(in.Value, out.Rev)}
	case Delete:
		if out.Unknown {
			return []kvState{{}}
		}
		if (out.Deleted == 1) != s.Present || out.Deleted > 1 {
			return nil
		}
		return []kvState{{}}
	case CAS:
		// holds: the compare certainly holds; maybe: it may (the current
		// revision is unknown).
		holds, maybe := false, false
		switch {
		case in.Expect == 0:
			holds = !s.Present
		case !s.Present:
		case s.Rev < 0:
			maybe = true
		default:
			holds = s.Rev == in.Expect
		}
		if out.Unknown {
			switch {
			case holds:
				return []kvState{written(in.Value, in.Rev)}
			case maybe:
				return []kvState{s, written(in.Value, in.Rev)}
			}
			return []kvState{s}
		}
		if out.Conflict {
			if holds {
				return nil
			}
			// The server reports the key's mod revision (0: absent).
			if !s.Present {
				if out.ModRev != 0 {
					return nil
				}
				return []kvState{s}
			}
			if out.ModRev == 0 || out.ModRev == in.Expect || (s.Rev >= 0 && out.ModRev != s.Rev) {
				return nil
			}
			return []kvState{written(s.Value, out.ModRev)}
		}
		if !(holds || maybe) || !newer(out.Rev) {
			return nil
		}
		return []kvState{written(in.Value, out.Rev)}
	}
	return nil
}

// Model is the porcupine model of cairn's key-value API, partitioned by
// key.
var Model = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{kvState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		next := step(state.(kvState), input.(Input), output.(Output))
		out := make([]interface{}, len(next))
		for i, s := range next {
			out[i] = s
		}
		return out
	},
	Equal: func(a, b interface{}) bool { return a.(kvState) == b.(kvState) },
	DescribeOperation: func(input, output interface{}) string {
		return describe(input.(Input), output.(Output))
	},
	DescribeState: func(state interface{}) string { return state.(kvState).String() },
}

func describe(in Input, out Output) string {
	var call string
	switch in.Kind {
	case Get:
		call = fmt.Sprintf("get(%s)", in.Key)
	case Put:
		call = fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	case Delete:
		call = fmt.Sprintf("delete(%s)", in.Key)
	case CAS:
		call = fmt.Sprintf("cas(%s, @%d, %q)", in.Key, in.Expect, in.Value)
	}
	var res string
	switch {
	case out.Unknown:
		res = "unknown"
	case in.Kind == Get && !out.Found:
		res = "not found"
	case in.Kind == Get:
		res = fmt.Sprintf("%q @%d", out.Value, out.Rev)
	case out.Conflict:
		res = fmt.Sprintf("conflict (mod revision %d)", out.ModRev)
	case in.Kind == Delete:
		res = fmt.Sprintf("deleted %d @%d", out.Deleted, out.Rev)
	default:
		res = fmt.Sprintf("ok @%d", out.Rev)
	}
	return call + " -> " + res
}

// Prepare readies a recorded history for the checker: operations of
// unknown outcome get the end of the history as their return time and the
// revision their value was seen with. It also returns the contradictions
// found on the way (one value seen at two revisions), each of which is a
// violation by itself.
func Prepare(history []porcupine.Operation) ([]porcupine.Operation, []string) {
	var end int64
	revOf := map[string]int64{}
	var problems []string
	see := func(key, v string, rev int64, what string) {
		k := key + "\x00" + v
		if r, ok := revOf[k]; ok && r != rev {
			problems = append(problems, fmt.Sprintf("key %s value %q seen at mod revision %d and %d (%s)", key, v, r, rev, what))
			return
		}
		revOf[k] = rev
	}
	for _, op := range history {
		in, out := op.Input.(Input), op.Output.(Output)
		if !out.Unknown {
			end = max(end, op.Return)
		}
		end = max(end, op.Call)
		switch {
		case out.Unknown || out.Conflict:
		case in.Kind == Get && out.Found:
			see(in.Key, out.Value, out.Rev, describe(in, out))
		case in.Kind == Put || in.Kind == CAS:
			see(in.Key, in.Value, out.Rev, describe(in, out))
		}
	}
	ops := slices.Clone(history)
	for i, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if !out.Unknown {
			continue
		}
		in.Rev = -1
		if r, ok := revOf[in.Key+"\x00"+in.Value]; ok && (in.Kind == Put || in.Kind == CAS) {
			in.Rev = r
		}
		ops[i].Input = in
		ops[i].Return = end + 1
	}
	return ops, problems
}

// Check checks a recorded history for linearizability within timeout. It
// returns porcupine's verdict, with the information needed to visualize
// it, and the contradictions Prepare found.
func Check(history []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo, []string) {
	ops, problems := Prepare(history)
	model := Model.ToModel()
	res := porcupine.CheckOperationsTimeout(model, ops, timeout)
	if res == porcupine.Ok {
		return res, porcupine.LinearizationInfo{}, problems
	}
	// Run again to get the partial linearizations for the visualization.
	res2, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	if res == porcupine.Illegal || res2 == porcupine.Illegal {
		res = porcupine.Illegal
	}
	return res, info, problems
}

// FormatHistory writes one operation per line, ordered by call time.
func FormatHistory(history []porcupine.Operation) string {
	ops := slices.Clone(history)
	slices.SortStableFunc(ops, func(a, b porcupine.Operation) int {
		switch {
		case a.Call < b.Call:
			return -1
		case a.Call > b.Call:
			return 1
		}
		return 0
	})
	var b strings.Builder
	for _, op := range ops {
		ret := fmt.Sprintf("%.6f", float64(op.Return)/1e9)
		if op.Return == math.MaxInt64 || op.Output.(Output).Unknown {
			ret = "       ∞"
		}
		fmt.Fprintf(&b, "%11.6f %s client %2d  %s  [%v]\n", float64(op.Call)/1e9, ret, op.ClientId,
			describe(op.Input.(Input), op.Output.(Output)), op.Metadata)
	}
	return b.String()
}
