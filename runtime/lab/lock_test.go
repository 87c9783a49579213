package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a lock-taking helper process when
// BASALT_LAB_TEST_HELPER is set, so that locks are tested across
// processes.
func TestMain(m *testing.M) {
	if mode := os.Getenv("BASALT_LAB_TEST_HELPER"); mode != "" {
		os.Exit(lockHelper(mode))
	}
	os.Exit(m.Run())
}

func lockHelper(mode string) int {
	dir, dev := os.Getenv("BASALT_LAB_TEST_DIR"), os.Getenv("BASALT_LAB_TEST_DEVICE")
	ctx := context.Background()
	switch mode {
	case "try":
		h, err := Lock(ctx, dir, dev, Holder{Job: "child"}, 0)
		if err != nil {
			fmt.Println("BUSY:", err)
			return 3
		}
		h.Release()
		fmt.Println("LOCKED")
		return 0
	case "hold":
		h, err := Lock(ctx, dir, dev, Holder{Job: "holder-child"}, 0)
		if err != nil {
			fmt.Println("ERROR:", err)
			return 1
		}
		fmt.Println("LOCKED")
		io.Copy(io.Discard, os.Stdin) // until killed, or the parent goes away
		h.Release()
		return 0
	case "contend":
		n, _ := strconv.Atoi(os.Getenv("BASALT_LAB_TEST_N"))
		for i := 0; i < n; i++ {
			if err := critical(ctx, dir, dev, fmt.Sprintf("proc-%d-%d", os.Getpid(), i), nil); err != nil {
				fmt.Println("ERROR:", err)
				return 1
			}
		}
		return 0
	}
	fmt.Println("unknown helper mode", mode)
	return 2
}

// critical takes the lock, proves nobody else is inside (a marker file
// created with O_EXCL works across processes; inside counts this
// process's goroutines), and releases it.
func critical(ctx context.Context, dir, dev, job string, inside *atomic.Int32) error {
	h, err := Lock(ctx, dir, dev, Holder{Job: job}, 5*time.Minute)
	if err != nil {
		return err
	}
	defer h.Release()
	if inside != nil {
		if n := inside.Add(1); n != 1 {
			return fmt.Errorf("%s: %d goroutines hold the lock at once", job, n)
		}
		defer inside.Add(-1)
	}
	marker := filepath.Join(dir, "inside")
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s: another holder is inside: %v", job, err)
	}
	f.Close()
	time.Sleep(time.Millisecond) // widen the window an overlap would need
	return os.Remove(marker)
}

// helper starts this test binary as a lock helper.
func helper(t *testing.T, mode, dir, dev string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "BASALT_LAB_TEST_HELPER="+mode, "BASALT_LAB_TEST_DIR="+dir, "BASALT_LAB_TEST_DEVICE="+dev)
	cmd.Env = append(cmd.Env, extraEnv...)
	return cmd
}

func TestLockBusyNamesHolder(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	since := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	h, err := Lock(ctx, dir, "hb1", Holder{Job: "smoke", Since: since}, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(ctx, dir, "hb1", Holder{Job: "second"}, 0)
	var busy *BusyError
	if !errors.As(err, &busy) {
		t.Fatalf("second Lock = %v, want a *BusyError", err)
	}
	want := Holder{PID: os.Getpid(), Job: "smoke", Since: since}
	if busy.Holder != want || busy.Device != "hb1" {
		t.Errorf("BusyError = %+v, want device hb1 held by %+v", busy, want)
	}
	msg := err.Error()
	for _, w := range []string{"hb1 is busy", fmt.Sprintf("pid %d", os.Getpid()), `job "smoke"`, "since 2026-03-01T10:00:00Z"} {
		if !strings.Contains(msg, w) {
			t.Errorf("second Lock = %q, want it to hold %q", msg, w)
		}
	}
	// Another device is free.
	other, err := Lock(ctx, dir, "hb2", Holder{}, 0)
	if err != nil {
		t.Errorf("Lock(hb2) while hb1 is held = %v", err)
	} else {
		other.Release()
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	h, err = Lock(ctx, dir, "hb1", Holder{Job: "third"}, 0)
	if err != nil {
		t.Fatalf("Lock after Release = %v", err)
	}
	h.Release()
}

func TestLockWait(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h, err := Lock(ctx, dir, "hb1", Holder{Job: "first"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	var once sync.Once
	onBusy = func(string) { once.Do(func() { close(waiting) }) }
	defer func() { onBusy = nil }()
	type result struct {
		h   *Held
		err error
	}
	got := make(chan result, 1)
	go func() {
		h, err := Lock(ctx, dir, "hb1", Holder{Job: "waiter"}, 10*time.Minute)
		got <- result{h, err}
	}()
	select {
	case <-waiting: // the waiter found the device busy
	case r := <-got:
		t.Fatalf("Lock(wait) returned before the holder released: %v, %v", r.h, r.err)
	}
	h.Release()
	r := <-got
	if r.err != nil {
		t.Fatalf("waiting Lock = %v, want the lock once released", r.err)
	}
	if hold := readHolder(r.h.Path); hold.Job != "waiter" || hold.PID != os.Getpid() {
		t.Errorf("lock file holder = %+v, want the waiter", hold)
	}
	r.h.Release()
}

func TestLockWaitGivesUp(t *testing.T) {
	dir := t.TempDir()
	h, err := Lock(context.Background(), dir, "hb1", Holder{Job: "long"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	_, err = Lock(context.Background(), dir, "hb1", Holder{}, 30*time.Millisecond)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Waited != 30*time.Millisecond || busy.Holder.Job != "long" {
		t.Fatalf("Lock(wait 30ms) on a held device = %v, want a BusyError after waiting, naming job long", err)
	}
	if !strings.Contains(err.Error(), "waiting 30ms") {
		t.Errorf("BusyError = %q, want it to say how long it waited", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	onBusy = func(string) { cancel() }
	defer func() { onBusy = nil }()
	_, err = Lock(ctx, dir, "hb1", Holder{}, time.Hour)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `job "long"`) {
		t.Errorf("Lock with a canceled context = %v, want context.Canceled naming the holder", err)
	}
}

func TestLockBadName(t *testing.T) {
	for _, name := range []string{"", "../x", "a/b", ".hidden"} {
		if h, err := Lock(context.Background(), t.TempDir(), name, Holder{}, 0); err == nil {
			h.Release()
			t.Errorf("Lock(%q) = nil error, want a bad name error", name)
		}
	}
}

// 64 goroutines try at once without waiting: exactly one gets the device,
// every other one is told who holds it.
func TestLock64FailFast(t *testing.T) {
	dir := t.TempDir()
	const n = 64
	var (
		start    = make(chan struct{})
		attempts sync.WaitGroup
		done     = make(chan struct{})
		winners  atomic.Int32
		errs     = make(chan error, n)
		releases sync.WaitGroup
	)
	for i := 0; i < n; i++ {
		attempts.Add(1)
		releases.Add(1)
		go func(i int) {
			defer releases.Done()
			<-start
			h, err := Lock(context.Background(), dir, "hb1", Holder{Job: fmt.Sprintf("job-%d", i)}, 0)
			attempts.Done()
			if err != nil {
				errs <- err
				return
			}
			winners.Add(1)
			<-done // hold until every attempt has returned
			h.Release()
		}(i)
	}
	close(start)
	attempts.Wait()
	close(done)
	releases.Wait()
	close(errs)
	if w := winners.Load(); w != 1 {
		t.Fatalf("%d goroutines got the lock at once, want exactly 1", w)
	}
	count := 0
	for err := range errs {
		count++
		var busy *BusyError
		if !errors.As(err, &busy) {
			t.Errorf("Lock = %v, want a *BusyError", err)
			continue
		}
		// The winner may not have written its name yet when a loser looks.
		if busy.Holder.PID != 0 && (busy.Holder.PID != os.Getpid() || !strings.HasPrefix(busy.Holder.Job, "job-")) {
			t.Errorf("BusyError holder = %+v, want a job-N of pid %d", busy.Holder, os.Getpid())
		}
	}
	if count != n-1 {
		t.Errorf("%d attempts failed, want %d", count, n-1)
	}
}

// 64 goroutines and 3 processes all wait for one device: every one gets
// it, one at a time.
func TestLock64Concurrent(t *testing.T) {
	dir := t.TempDir()
	const goroutines, procs, perProc = 64, 3, 5
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := 0; i < procs; i++ {
		cmd := helper(t, "contend", dir, "hb1", "BASALT_LAB_TEST_N="+strconv.Itoa(perProc))
		out := new(strings.Builder)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	var inside atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for i := 0; i < goroutines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := critical(context.Background(), dir, "hb1", fmt.Sprintf("g-%d", i), &inside); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process %d: %v\n%s", i, err, outs[i])
		}
	}
}

// A lock held by another process is reported with that process's pid, and
// SIGKILL of the holder frees the device.
func TestLockCrossProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	// This process holds; a child is refused and names us.
	h, err := Lock(ctx, dir, "hb1", Holder{Job: "parent-job"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := helper(t, "try", dir, "hb1").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child Lock while parent holds: exit %v, output %q; want exit 3 (busy)", err, out)
	}
	for _, w := range []string{fmt.Sprintf("pid %d", os.Getpid()), `job "parent-job"`} {
		if !strings.Contains(string(out), w) {
			t.Errorf("child's error %q, want it to hold %q", out, w)
		}
	}
	h.Release()

	// A child holds, is killed with SIGKILL, and the kernel frees the lock.
	cmd := helper(t, "hold", dir, "hb1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "LOCKED\n" {
		t.Fatalf("holder child said %q, %v; want LOCKED", line, err)
	}
	_, err = Lock(ctx, dir, "hb1", Holder{Job: "parent"}, 0)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Holder.PID != cmd.Process.Pid || busy.Holder.Job != "holder-child" {
		t.Fatalf("Lock while a child holds = %v, want a BusyError naming pid %d, job holder-child", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	h, err = Lock(ctx, dir, "hb1", Holder{Job: "after-kill"}, 0)
	if err != nil {
		t.Fatalf("Lock after the holder was SIGKILLed = %v, want the device free", err)
	}
	h.Release()
}

// A lock whose holder cannot be written is refused and released: a lock
// file that names nobody would make the next runner's "busy" error lie.
// RLIMIT_FSIZE 0 makes the write fail with EFBIG (Go ignores SIGXFSZ).
func TestLockHolderWriteFails(t *testing.T) {
	dir := t.TempDir()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 0, Max: old.Max}); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	h, err := Lock(context.Background(), dir, "hb1", Holder{Job: "j"}, 0)
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		h.Release()
		t.Fatalf("Lock with an unwritable holder = nil error, want write holder: ...")
	}
	if !strings.Contains(err.Error(), "lock device hb1: write holder:") || !errors.Is(err, unix.EFBIG) {
		t.Errorf("Lock = %v, want lock device hb1: write holder: ... file too large", err)
	}
	// The failed lock was released: the device can be locked again.
	h, err = Lock(context.Background(), dir, "hb1", Holder{Job: "j2"}, 0)
	if err != nil {
		t.Fatalf("Lock after the failed one = %v", err)
	}
	h.Release()
}
