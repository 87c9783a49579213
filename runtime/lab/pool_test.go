package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockAnyTakesFirstFree(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pool := []string{"s1", "s2"}
	h1, err := LockAny(ctx, dir, "sim", pool, Holder{Job: "a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h1.Device != "s1" {
		t.Errorf("LockAny(free pool) = %s, want s1", h1.Device)
	}
	h2, err := LockAny(ctx, dir, "sim", pool, Holder{Job: "b"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Device != "s2" {
		t.Errorf("LockAny(s1 held) = %s, want s2", h2.Device)
	}
	// A run naming one device and a pool run exclude each other.
	if _, err := Lock(ctx, dir, "s2", Holder{}, 0); err == nil {
		t.Error("Lock(s2) while the pool run holds it succeeded")
	}
	_, err = LockAny(ctx, dir, "sim", pool, Holder{Job: "c"}, 0)
	var pe *PoolBusyError
	if !errors.As(err, &pe) {
		t.Fatalf("LockAny(all held) = %v, want a *PoolBusyError", err)
	}
	for _, want := range []string{"pool sim", `s1 (held by pid`, `(job "a")`, `s2 (held by pid`, `(job "b")`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LockAny(all held) = %q, want it to name %q", err, want)
		}
	}
	h1.Release()
	h3, err := LockAny(ctx, dir, "sim", pool, Holder{Job: "c"}, time.Second)
	if err != nil || h3.Device != "s1" {
		t.Fatalf("LockAny(s1 released) = %v, %v, want s1", h3, err)
	}
	h2.Release()
	h3.Release()
}

// Waiters are served in the order they came, not by who polls first.
func TestLockAnyFirstComeFirstServed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pool := []string{"s1"}
	held, err := Lock(ctx, dir, "s1", Holder{Job: "holder"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	queue := filepath.Join(dir, "sim.queue")
	got := make(chan string, 3)
	waiters := []string{"first", "second", "third"}
	for i, job := range waiters {
		go func() {
			h, err := LockAny(ctx, dir, "sim", pool, Holder{Job: job}, 30*time.Second)
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- job
			time.Sleep(50 * time.Millisecond)
			h.Release()
		}()
		// Each waiter's ticket is in the queue before the next one comes.
		for deadline := time.Now().Add(10 * time.Second); ; {
			ents, _ := os.ReadDir(queue)
			n := 0
			for _, e := range ents {
				if !strings.HasPrefix(e.Name(), ".") {
					n++
				}
			}
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiter %s queued no ticket", job)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	held.Release()
	for _, want := range waiters {
		if g := <-got; g != want {
			t.Errorf("served %s, want %s", g, want)
		}
	}
}

// A waiter that died (its ticket no longer flocked) holds no one up.
func TestLockAnyDeadWaiter(t *testing.T) {
	dir := t.TempDir()
	queue := filepath.Join(dir, "sim.queue")
	os.MkdirAll(queue, 0o755)
	if err := os.WriteFile(filepath.Join(queue, "00000000000000000001-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := LockAny(context.Background(), dir, "sim", []string{"s1"}, Holder{}, 0)
	if err != nil {
		t.Fatalf("LockAny behind a dead ticket = %v, want the device", err)
	}
	h.Release()
	if _, err := os.Stat(filepath.Join(queue, "00000000000000000001-1")); !os.IsNotExist(err) {
		t.Errorf("dead ticket still queued: %v", err)
	}
}
