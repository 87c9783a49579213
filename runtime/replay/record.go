// Package replay runs a job again against a recorded result bundle instead
// of a device (basalt replay). The bundle's console.log is fed back through
// a sol.Transport, in step with what the job types; the IPMI, power and PXE
// backends answer from the recorded events; the target's commands run on
// the replayed console. A Session keeps the recording's cursors and the
// first place where the job parted from it (a Divergence).
//
// What a replay needs from a bundle (events.jsonl, schema version 1):
//
//	send        text (absent for secret sends), secret, console_offset
//	send_start  where a verified line began (its echo comes before its send)
//	console_mark, expect (outcome)   their console_offset
//	call        builtin, args, outcome, error, class, result
//	pxe_serve   what pxe.serve returned
//	publish     name, url (target.push, deploy_image, kexec)
//	target_run  token (the target's command markers)
//	target_ip   the target's address when it was a device fact
//	target_fetch sha256; the fetched file under artifacts/
//	http, dhcp_lease  what pxe.wait_request and pxe.leases return
//	stage_start, cleanup_start      where each stage begins
package replay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/basalt-lab/basalt/runtime/bundle"
)

// Op is one step of the recording the console is fed in step with: the
// job typed (send), started a console epoch (mark), or waited in vain
// (an expect that timed out). Offset is how many console.log bytes had
// been written when it happened (for a line typed with verify_echo, when
// its typing began).
type Op struct {
	Seq    int64
	Kind   string // send | mark | timeout
	Offset int64
	Text   string // send: the typed text, secrets masked
	Secret bool   // send: typed as secret, text not recorded
	// Patterns of a timed-out expect.
	Patterns []string
	Line     int // in events.jsonl
}

// Record is a bundle read for replay.
type Record struct {
	Dir    string
	Result bundle.Result
	// Events are the recorded events a replay answers from (calls, what
	// pxe.serve and target.fetch did, stage starts), in file order.
	Events  []bundle.Event
	Console []byte
	// Index is console.idx (or what the events' offsets tell): where in
	// the run each console byte was written.
	Index bundle.Index
	Ops   []Op
	// Calls are the recorded calls of the device modules that a replay
	// holds the job to (see Aligned), in order.
	Calls []bundle.Event
	// Token is the target's marker token (target_run events); "" when the
	// job ran no target command.
	Token string
	// IP is the target's address as a device fact ("" when the target
	// asked its console for it).
	IP string

	sendStart int64 // console offset of the last send_start, -1 after its send
}

// Aligned reports whether calls of builtin name must be made by a replay
// in the recorded order: those that act on the device. sol.expect and
// sol.mode are free (an edited job may wait for other text, or more
// often), as are test.* and every builtin that touches nothing.
func Aligned(name string) bool {
	mod, member, _ := strings.Cut(name, ".")
	switch mod {
	case "ipmi", "power", "pxe", "target":
		return true
	case "sol":
		return member == "send" || member == "sendline" || member == "mark"
	}
	return false
}

// ErrBundle is the error of a bundle a replay cannot use; its message names
// what is missing or damaged.
var ErrBundle = errors.New("bundle cannot be replayed")

// Load reads the bundle in dir for replay. A result.json that is missing,
// not JSON or of another schema version is bundle.ReadBundle's error
// (bundle.ErrSchema names both versions); a bundle whose events or
// console are missing, cut short or edited so that the replay cannot
// follow it is an error wrapping ErrBundle that names each problem.
func Load(dir string) (*Record, error) {
	rd, err := bundle.ReadBundle(dir)
	if err != nil {
		return nil, err
	}
	rec := &Record{Dir: dir, Result: rd.Result, Index: rd.Index, sendStart: -1}
	var problems []string
	problem := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if rd.Result.Status == "running" {
		problem("result.json: status is still running: the recorded run was cut short (killed) before it ended")
	}
	con, err := os.ReadFile(filepath.Join(dir, "console.log"))
	if err != nil {
		problem("console.log: missing")
	}
	rec.Console = con
	rec.readEvents(problem)
	if len(problems) > 0 {
		return nil, fmt.Errorf("replay %s: %w:\n  %s", dir, ErrBundle, strings.Join(problems, "\n  "))
	}
	return rec, nil
}

func (rec *Record) readEvents(problem func(string, ...any)) {
	f, err := os.Open(filepath.Join(rec.Dir, "events.jsonl"))
	if err != nil {
		problem("events.jsonl: missing")
		return
	}
	defer f.Close()
	jobEnd := false
	var maxOff int64
	bundle.ScanEvents(f, func(n int, ev bundle.Event, ok, cut bool) {
		switch {
		case cut:
			problem("events.jsonl: line %d is cut short (the file is truncated)", n)
		case !ok:
			problem("events.jsonl: line %d is not a JSON object", n)
		default:
			jobEnd = jobEnd || ev.Type == "job_end"
			maxOff = max(maxOff, ev.ConsoleOffset)
			rec.event(ev, n, problem)
		}
	})
	if !jobEnd {
		problem("events.jsonl: no job_end event (the file is truncated or was edited)")
	}
	if rec.Console != nil && maxOff > int64(len(rec.Console)) {
		problem("console.log: %d bytes, but events.jsonl says %d had been written (console.log is truncated)", len(rec.Console), maxOff)
	}
}

// keep are the event types a replay answers from (Record.Events): a large
// bundle's other events (expects, TFTP blocks, prints) are not kept.
var keep = map[string]bool{"call": true, "pxe_serve": true, "publish": true, "target_fetch": true, "http": true,
	"dhcp_lease": true, "stage_start": true, "cleanup_start": true}

// event adds one event of events.jsonl line n.
func (rec *Record) event(ev bundle.Event, n int, problem func(string, ...any)) {
	if keep[ev.Type] {
		rec.Events = append(rec.Events, ev)
	}
	needOffset := func() bool {
		if ev.ConsoleOffset < 0 {
			problem("events.jsonl: line %d: %s event without console_offset", n, ev.Type)
			return false
		}
		return true
	}
	switch ev.Type {
	case "send_start":
		if needOffset() {
			rec.sendStart = ev.ConsoleOffset
		}
	case "send":
		if !needOffset() {
			return
		}
		off := ev.ConsoleOffset
		if v, _ := ev.Fields["verified"].(bool); v && rec.sendStart >= 0 && rec.sendStart <= off {
			// The echo came before the send event: feed from where
			// typing began.
			off = rec.sendStart
		}
		rec.sendStart = -1
		secret, _ := ev.Fields["secret"].(bool)
		text, ok := ev.Fields["text"].(string)
		if !ok && !secret {
			problem("events.jsonl: line %d: send event without its text (recorded by a basalt older than replay, or edited)", n)
			return
		}
		rec.Ops = append(rec.Ops, Op{Seq: ev.Seq, Kind: "send", Offset: off, Text: text, Secret: secret, Line: n})
	case "console_mark":
		if needOffset() {
			rec.Ops = append(rec.Ops, Op{Seq: ev.Seq, Kind: "mark", Offset: ev.ConsoleOffset, Line: n})
		}
	case "expect":
		if ev.Str("outcome") == "timeout" && needOffset() {
			rec.Ops = append(rec.Ops, Op{Seq: ev.Seq, Kind: "timeout", Offset: ev.ConsoleOffset, Patterns: strs(ev.Fields["patterns"]), Line: n})
		}
	case "call":
		name := ev.Str("builtin")
		if name == "" {
			problem("events.jsonl: line %d: call event without its builtin", n)
			return
		}
		if Aligned(name) {
			rec.Calls = append(rec.Calls, ev)
		}
	case "target_ip":
		rec.IP = ev.Str("ip")
	case "target_run":
		if t := ev.Str("token"); t != "" && rec.Token == "" {
			rec.Token = t
		}
	}
}

// strs returns a list of strings: a JSON array's strings, or the
// []string of a live event.
func strs(v any) []string {
	if l, ok := v.([]string); ok {
		return l
	}
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Where names console.log byte off: its time since the run began and its
// stage, as console.idx says.
func (rec *Record) Where(off int64) string {
	w := fmt.Sprintf("console.log byte %d", off)
	e, ok := rec.Index.At(off)
	if !ok {
		return w
	}
	if !rec.Result.Started.IsZero() {
		w += fmt.Sprintf(", +%.3fs", e.Time.Sub(rec.Result.Started).Seconds())
	}
	if e.Stage != "" {
		w += ", stage " + e.Stage
	}
	return w
}

// between returns the recorded events of type typ after seq from and
// before seq to.
func (rec *Record) between(typ string, from, to int64) []bundle.Event {
	var out []bundle.Event
	i, _ := slices.BinarySearchFunc(rec.Events, from+1, func(e bundle.Event, s int64) int { return cmpInt(e.Seq, s) })
	for ; i < len(rec.Events) && rec.Events[i].Seq < to; i++ {
		if rec.Events[i].Type == typ {
			out = append(out, rec.Events[i])
		}
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// NeedsToken reports whether the recording ran target commands whose
// markers a replay must type again, but holds no token for them.
func (rec *Record) NeedsToken() bool {
	if rec.Token != "" {
		return false
	}
	for _, c := range rec.Calls {
		if strings.HasPrefix(c.Str("builtin"), "target.") {
			return true
		}
	}
	return false
}
