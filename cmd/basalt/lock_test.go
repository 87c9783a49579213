package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// 64 concurrent `basalt run`s on one lab device of type sim, each waiting
// for the device: every one runs, and never two at a time.
func TestSixtyFourRunsOneDevice(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BASALT_LOCK_DIR", filepath.Join(dir, "locks"))
	os.MkdirAll(filepath.Join(dir, "lab", "devices"), 0o755)
	os.WriteFile(filepath.Join(dir, "lab", "lab.star"), []byte("lab(name = \"t\")\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "lab", "devices", "sim01.star"), []byte("device(name = \"sim01\", type = \"sim\", mac = \"02:42:00:00:00:01\")\n"), 0o644)
	job := filepath.Join(dir, "job.star")
	os.WriteFile(job, []byte("job(name = \"hold\", timeout = \"5m\")\ndef one(ctx):\n    time.sleep(\"5ms\")\nstage(\"one\", one)\n"), 0o644)

	const n = 64
	type span struct{ start, end time.Time }
	var (
		mu    sync.Mutex
		spans []span
		codes = map[int]int{}
		wg    sync.WaitGroup
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var out, errb bytes.Buffer
			code := run(context.Background(), context.Background(), []string{"run", job, "--lab", filepath.Join(dir, "lab"),
				"--device", "sim01", "--wait", "2m", "--out", filepath.Join(dir, "out", fmt.Sprint(i))}, nil, &out, &errb)
			mu.Lock()
			codes[code]++
			mu.Unlock()
			if code != 0 {
				t.Errorf("run %d: exit %d\n%s%s", i, code, out.String(), errb.String())
				return
			}
			for _, ev := range scanLines(t, filepath.Join(dir, "out", fmt.Sprint(i), "events.jsonl")) {
				if ev["type"] == "device_locked" {
					st, _ := time.Parse(time.RFC3339Nano, ev["time"].(string))
					// result.json is last written before the lock is released
					info, _ := os.Stat(filepath.Join(dir, "out", fmt.Sprint(i), "result.json"))
					mu.Lock()
					spans = append(spans, span{st, info.ModTime()})
					mu.Unlock()
				}
			}
		}(i)
	}
	wg.Wait()
	if codes[0] != n {
		t.Fatalf("exit codes %v, want all %d runs to pass", codes, n)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Errorf("run holding the device from %s started before the previous holder finished at %s", spans[i].start, spans[i-1].end)
		}
	}
	if len(spans) != n {
		t.Errorf("%d runs recorded holding the device, want %d", len(spans), n)
	}
}
