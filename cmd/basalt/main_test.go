package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(cleanAfter{m}, map[string]func(){
		"basalt": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// cleanAfter runs the tests, then removes what the e2e tests built once
// for all of them (testscript.Main exits after Run).
type cleanAfter struct{ m *testing.M }

func (c cleanAfter) Run() int {
	code := c.m.Run()
	if e2eDir != "" {
		os.RemoveAll(e2eDir)
	}
	return code
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("..", "..", "testdata", "script"),
		Setup: func(env *testscript.Env) error {
			root, err := filepath.Abs(filepath.Join("..", ".."))
			if err != nil {
				return err
			}
			env.Setenv("ROOT", root)
			env.Setenv("BASALT_LOCK_DIR", filepath.Join(env.WorkDir, ".locks"))
			env.Setenv("XDG_CACHE_HOME", filepath.Join(env.WorkDir, ".cache"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfor":   waitFor,
			"bmcdevice": bmcDevice,
			"jsonget":   jsonGet,
			"signal":    sendSignal,
			"numbered":  numbered,
			"exits":     exits,
			"nooverlap": noOverlap,
			"nosecret": func(ts *testscript.TestScript, neg bool, args []string) {
				// nosecret DIR VALUE: no file under DIR holds VALUE, raw or
				// escaped (secretForms).
				filepath.Walk(ts.MkAbs(args[0]), func(p string, info os.FileInfo, err error) error {
					if err == nil && !info.IsDir() {
						data, _ := os.ReadFile(p)
						for name, f := range secretForms(args[1]) {
							if strings.Contains(string(data), f) {
								ts.Fatalf("%s holds the secret (%s form)", p, name)
							}
						}
					}
					return nil
				})
			},
			"jsonlines": func(ts *testscript.TestScript, neg bool, args []string) {
				data, err := os.ReadFile(ts.MkAbs(args[0]))
				ts.Check(err)
				for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
					if !json.Valid([]byte(line)) {
						ts.Fatalf("%s:%d: not JSON: %q", args[0], i+1, line)
					}
				}
			},
		},
	})
}

// waitfor FILE SUBSTRING [TIMEOUT]: wait until FILE contains SUBSTRING.
func waitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: waitfor FILE SUBSTRING [TIMEOUT]")
	}
	limit := 60 * time.Second
	if len(args) > 2 {
		d, err := time.ParseDuration(args[2])
		ts.Check(err)
		limit = d
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(ts.MkAbs(args[0]))
		if strings.Contains(string(data), args[1]) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s does not contain %q after %s", args[0], args[1], limit)
}

// exits CODE PROG [ARGS...]: run PROG as exec does (its stdout and stderr
// are what the next stdout and stderr commands read) and check that it
// exits with CODE.
func exits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// numbered FILE: the lines of FILE that are only a number are 0, 1, 2 ...
// in order: nothing lost, nothing duplicated.
func numbered(ts *testscript.TestScript, neg bool, args []string) {
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	next := 0
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		var n int
		if _, err := fmt.Sscanf(line, "%d", &n); err != nil || fmt.Sprint(n) != line {
			continue
		}
		if n != next {
			ts.Fatalf("%s: numbered line %d where %d was due", args[0], n, next)
		}
		next++
	}
	if next == 0 {
		ts.Fatalf("%s: no numbered lines", args[0])
	}
	ts.Logf("%d numbered lines in order", next)
}

// signal NAME PIDFILE: send a signal to the process whose pid is in PIDFILE.
func sendSignal(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: signal NAME PIDFILE")
	}
	sigs := map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}
	sig, ok := sigs[args[0]]
	if !ok {
		ts.Fatalf("unknown signal %s", args[0])
	}
	data, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	var pid int
	if _, err := fmt.Sscan(string(data), &pid); err != nil || pid <= 0 {
		ts.Fatalf("%s: no pid", args[1])
	}
	ts.Check(syscall.Kill(pid, sig))
}

// jsonget FILE PATH WANT: the JSON value at a dotted path (numbers index
// arrays) must print as WANT.
func jsonGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: jsonget FILE PATH WANT")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	for _, k := range strings.Split(args[1], ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			var i int
			fmt.Sscan(k, &i)
			if i < 0 || i >= len(x) {
				ts.Fatalf("%s: index %s out of range", args[1], k)
			}
			v = x[i]
		default:
			ts.Fatalf("%s: cannot index %T with %s", args[1], v, k)
		}
	}
	got := fmt.Sprint(v)
	if (got == args[2]) == neg {
		ts.Fatalf("%s %s = %s, want %s%s", args[0], args[1], got, map[bool]string{true: "not ", false: ""}[neg], args[2])
	}
}

// scanLines is a helper for tests that read events.jsonl.
func scanLines(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q: %v", name, sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}
