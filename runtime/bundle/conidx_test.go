package bundle

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins"
)

// lineStarts returns the byte offset of each line of data.
func lineStarts(data []byte) []int64 {
	var offs []int64
	for off := 0; off < len(data); {
		offs = append(offs, int64(off))
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return offs
}

// Every console line maps, through console.idx, to the stage it was
// written in and to a time within IndexGranularity of its write; events
// carry the console offset at which they happened.
func TestConsoleIndexTimesAndStages(t *testing.T) {
	dir := t.TempDir()
	b, err := Create(dir, Result{Job: "j"}, Options{Secrets: []string{"hunter2"}})
	if err != nil {
		t.Fatal(err)
	}
	type write struct {
		text, stage string
		before      time.Time
		after       time.Time
	}
	var writes []write
	con := func(text, stage string) {
		w := write{text: text, stage: stage, before: time.Now().UTC()}
		b.Console().Write([]byte(text))
		w.after = time.Now().UTC()
		writes = append(writes, w)
	}
	con("firmware banner\n", "")
	b.Emit("stage_start", map[string]any{"stage": "boot", "attempt": 1})
	con("Linux version 6.1\nmounting root\n", "boot")
	con("login: ", "boot")
	con("root\n", "boot")
	b.TestCase(builtins.TestCase{Name: "booted", Result: "pass", Stage: "boot"})
	b.Emit("stage_end", map[string]any{"stage": "boot", "status": "pass"})
	b.Emit("stage_start", map[string]any{"stage": "smoke", "attempt": 1})
	con("# uname -a\nLinux sim\n", "smoke")
	b.Emit("stage_end", map[string]any{"stage": "smoke", "status": "pass"})
	b.Emit("cleanup_start", map[string]any{"cleanup": "off"})
	con("reboot: Power down\n", "cleanup:off")
	b.Emit("cleanup_end", map[string]any{"cleanup": "off"})
	b.Emit("job_end", map[string]any{"status": "pass"})
	b.Update(func(r *Result) { r.Status = "pass" })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	rd, err := ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	// Where each write begins in console.log, and so which line is whose.
	var off int64
	for _, w := range writes {
		for i, start := range lineStarts([]byte(w.text)) {
			if i == 0 && off > 0 && data[off-1] != '\n' {
				continue // continues the line of an earlier write ("login: root")
			}
			e, ok := rd.Index.At(off + start)
			if !ok {
				t.Fatalf("Index.At(%d) (line %q) = none, want an entry", off+start, w.text)
			}
			if e.Stage != w.stage {
				t.Errorf("Index.At(%d) (line %q) stage = %q, want %q", off+start, w.text, e.Stage, w.stage)
			}
			if e.Time.After(w.after) || e.Time.Before(w.before.Add(-IndexGranularity)) {
				t.Errorf("Index.At(%d) (line %q) time = %s, want within [%s - %s, %s]", off+start, w.text, e.Time, w.before, IndexGranularity, w.after)
			}
		}
		off += int64(len(w.text))
	}
	if off != int64(len(data)) {
		t.Fatalf("console.log has %d bytes, want %d", len(data), off)
	}
	// The events say where the console was.
	want := map[string]int64{}
	n := int64(0)
	for _, w := range writes {
		switch w.stage {
		case "boot":
			if _, ok := want["boot"]; !ok {
				want["boot"] = n
			}
		case "smoke":
			if _, ok := want["smoke"]; !ok {
				want["smoke"] = n
			}
		}
		n += int64(len(w.text))
	}
	for _, ev := range rd.Events {
		if ev.Type == "stage_start" && ev.ConsoleOffset != want[ev.Str("stage")] {
			t.Errorf("stage_start %s console_offset = %d, want %d", ev.Str("stage"), ev.ConsoleOffset, want[ev.Str("stage")])
		}
		if ev.ConsoleOffset < 0 {
			t.Errorf("event %s has no console_offset", ev.Type)
		}
	}
	if tc := rd.Result.Tests[0]; tc.ConsoleOffset != 0 {
		// ConsoleOffset is not in result.json; the event has it.
		t.Errorf("result.json test case carries ConsoleOffset %d", tc.ConsoleOffset)
	}
	for _, ev := range rd.Events {
		if ev.Type == "test_case" && ev.ConsoleOffset != int64(strings.Index(string(data), "# uname")) {
			t.Errorf("test_case console_offset = %d, want %d (after root)", ev.ConsoleOffset, strings.Index(string(data), "# uname"))
		}
	}
	for _, p := range rd.Problems {
		if !strings.Contains(p, "summary.md") { // written by the command, not the bundle
			t.Errorf("ReadBundle problem %q on a complete bundle", p)
		}
	}

	// A bundle from before console.idx: the events' offsets stand in.
	os.Remove(filepath.Join(dir, "console.idx"))
	rd, err = ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := rd.Index.At(int64(strings.Index(string(data), "Linux sim"))); e.Stage != "smoke" {
		t.Errorf("without console.idx, Index.At(Linux sim) stage = %q, want smoke (from the events)", e.Stage)
	}
	if !strings.Contains(strings.Join(rd.Problems, "\n"), "console.idx: missing") {
		t.Errorf("ReadBundle problems = %q, want console.idx named missing", rd.Problems)
	}
}

// ReadBundle names what a damaged bundle lacks, file by file.
func TestReadBundleDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"no console", func(d string) { os.Remove(filepath.Join(d, "console.log")) }, "console.log: missing"},
		{"console cut", func(d string) { os.Truncate(filepath.Join(d, "console.log"), 5) }, "console.idx: indexes 16 bytes past console.log's 5 (console.log is truncated)"},
		{"no events", func(d string) { os.Remove(filepath.Join(d, "events.jsonl")) }, "events.jsonl: missing"},
		{"edited event", func(d string) {
			data, _ := os.ReadFile(filepath.Join(d, "events.jsonl"))
			os.WriteFile(filepath.Join(d, "events.jsonl"), bytes.Replace(data, []byte(`{"`), []byte(`{oops "`), 2), 0o644)
		}, "events.jsonl: line 1 is not a JSON object\nevents.jsonl: 2 lines could not be read in all"},
		{"index edited", func(d string) {
			os.WriteFile(filepath.Join(d, "console.idx"), []byte(`{"offset":9,"time":"2026-12-01T00:00:00Z","stage":""}`+"\n"+`{"offset":3,"time":"2026-12-01T00:00:00Z","stage":"s"}`+"\n"), 0o644)
		}, "console.idx: line 2: offset 3 goes back from 9"},
		{"killed", func(d string) {
			data, _ := os.ReadFile(filepath.Join(d, "result.json"))
			os.WriteFile(filepath.Join(d, "result.json"), bytes.Replace(data, []byte(`"status": "pass"`), []byte(`"status": "running"`), 1), 0o644)
		}, "result.json: status is still running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := Create(dir, Result{Job: "j"}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			b.Emit("stage_start", map[string]any{"stage": "s"})
			b.Console().Write([]byte("sixteen bytes..\n"))
			b.Emit("stage_end", map[string]any{"stage": "s"})
			b.Emit("job_end", map[string]any{"status": "pass"})
			b.Update(func(r *Result) { r.Status = "pass" })
			b.Close()
			tc.damage(dir)
			rd, err := ReadBundle(dir)
			if err != nil {
				t.Fatalf("ReadBundle(damaged) = %v, want the bundle with problems", err)
			}
			if !strings.Contains(strings.Join(rd.Problems, "\n"), tc.want) {
				t.Errorf("ReadBundle(%s) problems = %q, want %q", tc.name, rd.Problems, tc.want)
			}
			if err := WriteReport(dir, nil); err != nil {
				t.Errorf("WriteReport(%s) = %v, want a report of what is there", tc.name, err)
			}
		})
	}
}
