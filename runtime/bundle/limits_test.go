package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
)

func TestVolumeLimits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	var got []error
	b, err := Create(dir, Result{Job: "j"}, Options{Limits: Limits{JobLog: 1 << 20, Events: 4 << 20}, OnLimit: func(err error) { got = append(got, err) }})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("y", 100<<10)
	for i := 0; i < 50; i++ { // 50 x 100 KiB prints: 5 MiB
		b.Print(line)
	}
	for i := 0; i < 50; i++ { // 5 MiB of other events
		b.Emit("console", map[string]any{"text": line})
	}
	b.Emit("stage_end", map[string]any{"stage": "s"}) // lifecycle events survive the limit
	b.Update(func(r *Result) { r.Status = "error" })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for name, limit := range map[string]int64{"job.log": 1 << 20, "events.jsonl": 4<<20 + 4096} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > limit {
			t.Errorf("%s holds %d bytes, want at most %d", name, st.Size(), limit)
		}
	}
	if len(got) != 2 || !strings.Contains(got[0].Error(), "job.log limit of 1048576 bytes exceeded") ||
		!strings.Contains(got[1].Error(), "events.jsonl limit of 4194304 bytes exceeded") {
		t.Fatalf("OnLimit got %v, want the job.log then the events.jsonl limit, once each", got)
	}
	for _, e := range got {
		if builtins.ClassOf(e) != builtins.ClassJob {
			t.Errorf("limit error %v has class %s, want job", e, builtins.ClassOf(e))
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, "job.log"))
	if !strings.HasSuffix(string(log), "job.log limit of 1048576 bytes exceeded; later output is dropped\n") {
		t.Errorf("job.log ends %q, want the limit named", log[len(log)-80:])
	}
	ev, _ := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if !strings.Contains(string(ev), `"type":"events_truncated"`) || !strings.HasSuffix(strings.TrimSpace(string(ev)), `"type":"stage_end"}`) {
		t.Errorf("events.jsonl lacks the events_truncated marker or the stage_end after it")
	}
}

func TestDefaultLimits(t *testing.T) {
	b, err := Create(filepath.Join(t.TempDir(), "b"), Result{Job: "j"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.limits.JobLog != DefaultJobLogLimit || b.limits.Events != DefaultEventsLimit {
		t.Errorf("default limits = %+v, want job.log %d, events %d", b.limits, DefaultJobLogLimit, DefaultEventsLimit)
	}
}
