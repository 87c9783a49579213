package bundle

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Event is one line of events.jsonl: the fields every event has, and all
// of them in Fields.
type Event struct {
	Seq           int64
	Time          time.Time
	Type          string
	Stage         string // the stage a call or test case was made in, if it says
	ConsoleOffset int64  // -1 when the event does not say (a bundle from before console offsets)
	Fields        map[string]any
}

// Str returns the string field k, or "".
func (e Event) Str(k string) string { s, _ := e.Fields[k].(string); return s }

// Read is a bundle read back from its directory: for `basalt report`, the
// HTML report and triage. A bundle that is damaged but has a result.json
// reads, with what is missing or broken in Problems.
type Read struct {
	Dir    string
	Result Result
	// Events are the events in file order, at most MaxReadEvents of them
	// besides the job's structure (job_, stage_, cleanup_ events), which
	// are always kept; Dropped counts the others left out.
	Events  []Event
	Dropped int
	// Index maps console offsets to time and stage: console.idx, or, for
	// a bundle without it, what the events' console offsets tell.
	Index       Index
	ConsoleSize int64
	// Problems name, file by file, what the bundle lacks or what in it
	// could not be read.
	Problems []string
}

// MaxReadEvents bounds the events ReadBundle keeps: a bundle's events.jsonl
// may hold 64 MiB of them.
const MaxReadEvents = 20000

// ErrSchema is the error of a bundle of another schema version.
var ErrSchema = errors.New("unsupported bundle schema version")

// ReadBundle reads the bundle in dir. It fails when result.json is not
// there or not JSON, or is of another schema version than SchemaVersion
// (the error names both); any other damage is reported in Problems.
func ReadBundle(dir string) (*Read, error) {
	data, err := os.ReadFile(filepath.Join(dir, "result.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read bundle %s: result.json is missing (not a bundle, or one cut short before it was written)", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", dir, err)
	}
	var head struct {
		SchemaVersion *int `json:"schema_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("read bundle %s: result.json: %w", dir, err)
	}
	if head.SchemaVersion == nil {
		return nil, fmt.Errorf("read bundle %s: result.json has no schema_version; this basalt reads schema version %d: %w", dir, SchemaVersion, ErrSchema)
	}
	if *head.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("read bundle %s: result.json is schema version %d; this basalt reads schema version %d: %w", dir, *head.SchemaVersion, SchemaVersion, ErrSchema)
	}
	rd := &Read{Dir: dir}
	if err := json.Unmarshal(data, &rd.Result); err != nil {
		return nil, fmt.Errorf("read bundle %s: result.json: %w", dir, err)
	}
	problem := func(format string, a ...any) { rd.Problems = append(rd.Problems, fmt.Sprintf(format, a...)) }
	if rd.Result.Status == "" {
		problem("result.json: no status")
	} else if rd.Result.Status == "running" {
		problem("result.json: status is still running: the run was cut short (killed) before it ended")
	}
	if rd.Result.Started.IsZero() {
		problem("result.json: no start time")
	}
	for _, name := range []string{"junit.xml", "job.log"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			problem("%s: missing", name)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "console.log")); err != nil {
		problem("console.log: missing")
	} else {
		rd.ConsoleSize = fi.Size()
	}
	rd.readEvents(problem)
	rd.readIndex(problem)
	return rd, nil
}

func (rd *Read) readEvents(problem func(string, ...any)) {
	f, err := os.Open(filepath.Join(rd.Dir, "events.jsonl"))
	if err != nil {
		problem("events.jsonl: missing")
		return
	}
	defer f.Close()
	bad := 0
	ScanEvents(f, func(n int, ev Event, ok, cut bool) {
		switch {
		case !ok:
			if bad == 0 {
				what := "is not a JSON object"
				if cut {
					what = "is cut short (the file is truncated)"
				}
				problem("events.jsonl: line %d %s", n, what)
			}
			bad++
		case len(rd.Events) < MaxReadEvents || lifecycle(ev.Type):
			rd.Events = append(rd.Events, ev)
		default:
			rd.Dropped++
		}
	})
	if bad > 1 {
		problem("events.jsonl: %d lines could not be read in all", bad)
	}
	if len(rd.Events) > 0 && rd.Events[len(rd.Events)-1].Type != "job_end" && rd.Result.Status != "running" {
		// cleanup events may follow job_end; any job_end will do
		found := false
		for _, ev := range rd.Events {
			found = found || ev.Type == "job_end"
		}
		if !found {
			problem("events.jsonl: no job_end event (the file is truncated or was edited)")
		}
	}
}

func parseEvent(line []byte) (Event, bool) {
	line = bytes.TrimSpace(line)
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&m); err != nil || m == nil {
		return Event{}, false
	}
	ev := Event{Fields: m, ConsoleOffset: -1}
	ev.Type, _ = m["type"].(string)
	ev.Stage, _ = m["stage"].(string)
	if s, ok := m["time"].(string); ok {
		ev.Time, _ = time.Parse(time.RFC3339Nano, s)
	}
	if n, ok := m["seq"].(json.Number); ok {
		ev.Seq, _ = n.Int64()
	}
	if n, ok := m["console_offset"].(json.Number); ok {
		ev.ConsoleOffset, _ = n.Int64()
	}
	return ev, true
}

func (rd *Read) readIndex(problem func(string, ...any)) {
	f, err := os.Open(filepath.Join(rd.Dir, "console.idx"))
	if err != nil {
		problem("console.idx: missing; console times and stages come from the events' console offsets")
		rd.Index = indexFromEvents(rd.Events)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var last int64
	for n := 1; sc.Scan(); n++ {
		var e IndexEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			problem("console.idx: line %d is not an entry (%v); the index stops there", n, err)
			return
		}
		if e.Offset < last {
			problem("console.idx: line %d: offset %d goes back from %d; the index stops there", n, e.Offset, last)
			return
		}
		last = e.Offset
		rd.Index = append(rd.Index, e)
	}
	if rd.ConsoleSize > 0 && last > rd.ConsoleSize {
		problem("console.idx: indexes %d bytes past console.log's %d (console.log is truncated)", last, rd.ConsoleSize)
	}
}

// indexFromEvents makes an index from events that carry console offsets.
func indexFromEvents(evs []Event) Index {
	var ix Index
	stage := ""
	for _, ev := range evs {
		if s, ok := stageOf(ev.Type, ev.Fields); ok {
			stage = s
		}
		if ev.ConsoleOffset < 0 || ev.Time.IsZero() {
			continue
		}
		if n := len(ix); n > 0 && ix[n-1].Offset > ev.ConsoleOffset {
			continue
		}
		ix = append(ix, IndexEntry{Offset: ev.ConsoleOffset, Time: ev.Time, Stage: stage})
	}
	return ix
}

// ConsoleAt reads console.log bytes [off, off+n), fewer at its end.
func (rd *Read) ConsoleAt(off int64, n int) []byte {
	f, err := os.Open(filepath.Join(rd.Dir, "console.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, n)
	m, _ := f.ReadAt(buf, off)
	return buf[:m]
}
