package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-lab/basalt/builtins/pxe"
	"github.com/basalt-lab/basalt/builtins/sol"
	"github.com/basalt-lab/basalt/builtins/sol/expect"
	"github.com/basalt-lab/basalt/runtime/bundle"
)

func TestMasked(t *testing.T) {
	for _, tc := range []struct {
		recorded, typed string
		want            bool
	}{
		{"uname -a\n", "uname -a\n", true},
		{"uname -a\n", "uname -r\n", false},
		{"login ******\n", "login hunter2\n", true},
		{"login ******\n", "login \n", false}, // a secret is never empty
		{"login ******\n", "logout hunter2\n", false},
		{"a ****** b ****** c", "a x b y c", true},
		{"a ****** b ****** c", "a x b c", false},
		{"******", "s3cret", true},
		{"******", "", false},
		{"******", "******", true},
	} {
		if got := masked(tc.recorded, tc.typed); got != tc.want {
			t.Errorf("masked(%q, %q) = %v, want %v", tc.recorded, tc.typed, got, tc.want)
		}
	}
}

func TestAround(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, tc := range []struct{ a, b, wantA, wantB string }{
		{"uname -a\n", "uname -r\n", `"uname -a\n"`, `"uname -r\n"`},
		{long + "A" + long, long + "B" + long, `…"` + strings.Repeat("x", 40) + `A` + strings.Repeat("x", 59) + `"…`, `…"` + strings.Repeat("x", 40) + `B` + strings.Repeat("x", 59) + `"…`},
		{"ab" + long, "ac", `"ab` + strings.Repeat("x", 59) + `"…`, `"ac"`},
	} {
		if a, b := around(tc.a, tc.b); a != tc.wantA || b != tc.wantB {
			t.Errorf("around(%.20q…, %.20q…) = %s, %s; want %s, %s", tc.a, tc.b, a, b, tc.wantA, tc.wantB)
		}
	}
}

func FuzzMasked(f *testing.F) {
	f.Add("login ******\n", "login hunter2\n")
	f.Add("a ****** b ****** c", "a x b y c")
	f.Add("******", "")
	f.Fuzz(func(t *testing.T, recorded, typed string) {
		got := masked(recorded, typed)
		if !strings.Contains(recorded, bundle.Mask) && got != (recorded == typed) {
			t.Fatalf("masked(%q, %q) = %v without a mask", recorded, typed, got)
		}
		if got && !strings.HasPrefix(typed, strings.Split(recorded, bundle.Mask)[0]) {
			t.Fatalf("masked(%q, %q) = true but the text before the first mask differs", recorded, typed)
		}
	})
}

// writeBundle writes a minimal bundle: result.json, console.log and the
// given events.jsonl.
func writeBundle(t testing.TB, console, events string) string {
	dir := t.TempDir()
	res, _ := json.Marshal(bundle.Result{SchemaVersion: bundle.SchemaVersion, Job: "j", Status: "pass", Started: time.Now()})
	for name, data := range map[string]string{"result.json": string(res), "console.log": console, "events.jsonl": events} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ev(seq int, off int, typ string, kv ...any) string {
	m := map[string]any{"seq": seq, "console_offset": off, "type": typ, "time": "2026-12-01T00:00:00Z"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return string(b) + "\n"
}

// The transport feeds the console up to the next recorded send, mark or
// timed-out expect, and on once the job has done the same: an expect
// that the fed console cannot satisfy fails at once, as a timeout.
func TestSessionFeed(t *testing.T) {
	console := "boot\nlogin: " + "root\nWelcome\n# " + "late\n"
	events := ev(1, 0, "job_start") +
		ev(2, 0, "console_mark") +
		ev(3, 12, "send", "text", "root\n", "secret", false, "length", 5) +
		ev(4, 27, "expect", "outcome", "timeout", "patterns", []string{`"nope"`}) +
		ev(5, 32, "job_end")
	rec, err := Load(writeBundle(t, console, events))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Ops) != 3 {
		t.Fatalf("ops = %+v, want mark, send and the timed-out expect", rec.Ops)
	}
	s := NewSession(rec)
	con := sol.New(s.Transport(), sol.Options{})
	ctx := context.Background()
	if err := con.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	defer s.Close()
	c := &Console{S: s, C: con}
	c.Mark()
	lit := func(p string) []expect.Pattern { return []expect.Pattern{expect.Literal(p)} }
	if _, err := c.Expect(ctx, lit("login: ")...); err != nil {
		t.Fatalf("Expect(login) = %v, want a match", err)
	}
	// "Welcome" comes after the recorded send: not before the job types.
	_, err = c.Expect(ctx, lit("Welcome")...)
	var te *sol.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Expect(Welcome) before typing = %v, want a *sol.TimeoutError", err)
	}
	if err := c.SendLine(ctx, "rooot", sol.SendOptions{}); err == nil || s.Divergence() == nil ||
		!strings.Contains(s.Divergence().String(), `expected typing "root\n"; got typing "rooot\n"`) {
		t.Fatalf("SendLine(rooot) = %v, divergence %v; want a job error and the divergence", err, s.Divergence())
	}
	s.div = nil
	if err := c.SendLine(ctx, "root", sol.SendOptions{}); err != nil {
		t.Fatalf("SendLine(root) = %v", err)
	}
	if _, err := c.Expect(ctx, lit("# ")...); err != nil {
		t.Fatalf("Expect(#) after typing = %v, want a match", err)
	}
	// The recorded expect timed out before "late": so does the replayed one,
	// and that is no divergence.
	if _, err := c.Expect(ctx, lit("late")...); !errors.As(err, &te) {
		t.Fatalf("Expect(late) = %v, want a timeout where the recording timed out", err)
	}
	if s.Divergence() != nil {
		t.Errorf("divergence %v after the recorded timeout, want none", s.Divergence())
	}
	if _, err := c.Expect(ctx, lit("late")...); err != nil {
		t.Fatalf("Expect(late) past the timed-out expect = %v, want a match", err)
	}
}

// Load names what a damaged events.jsonl lacks, and never panics.
func FuzzLoad(f *testing.F) {
	f.Add("ab", ev(1, 0, "send", "text", "a\n", "secret", false)+ev(2, 2, "job_end"))
	f.Add("", ev(1, 0, "send", "secret", true)+ev(2, 0, "call", "builtin", "target.run"))
	f.Add("x", `{"seq":1,"type":"console_mark","console_offset":"7"}`+"\n{")
	f.Add("x", ev(1, 9, "expect", "outcome", "timeout", "patterns", []any{1, "a"}))
	f.Fuzz(func(t *testing.T, console, events string) {
		rec, err := Load(writeBundle(t, console, events))
		if err != nil {
			if !errors.Is(err, ErrBundle) {
				t.Fatalf("Load error %v does not wrap ErrBundle", err)
			}
			return
		}
		for _, op := range rec.Ops {
			if op.Offset < 0 || op.Offset > int64(len(console)) {
				t.Fatalf("op %+v outside the %d-byte console", op, len(console))
			}
		}
		_ = fmt.Sprint(rec.NeedsToken())
	})
}

// The netinstall builtins answer from the record: pxe.publish's URL, the
// HTTP request pxe.wait_request waited for, the leases pxe.leases listed.
func TestNetinstallFromRecord(t *testing.T) {
	events := ev(1, 0, "job_start") +
		ev(2, 0, "call", "builtin", "pxe.publish", "args", []string{`"preseed.cfg"`, `"..."`}, "outcome", "ok", "result", "http://10.0.0.1:8080/files/preseed.cfg", "pos", "job.star:3:16") +
		ev(3, 0, "dhcp_lease", "mac", "52:54:00:be:e2:01", "ip", "10.0.0.100", "vendor_class", "d-i") +
		ev(4, 0, "http", "file", "files/preseed.cfg", "client", "10.0.0.100:4242", "status", 200) +
		ev(5, 0, "http", "file", "debian/dists/bookworm/Release", "client", "10.0.0.100:4243", "status", 404) +
		ev(6, 0, "call", "builtin", "pxe.wait_request", "args", []string{`"debian/"`}, "outcome", "ok", "pos", "job.star:4:21") +
		ev(7, 0, "call", "builtin", "pxe.leases", "args", []string{}, "outcome", "ok", "pos", "job.star:5:14") +
		ev(8, 0, "job_end")
	rec, err := Load(writeBundle(t, "", events))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSession(rec)
	n := s.PXE().(pxe.Netinstall)
	u, err := n.PublishData("preseed.cfg", []byte("d-i ..."))
	if err != nil || u != "http://10.0.0.1:8080/files/preseed.cfg" {
		t.Errorf("PublishData = %q, %v; want the recorded URL", u, err)
	}
	s.Called(map[string]any{"builtin": "pxe.publish", "args": []any{`"preseed.cfg"`, `"..."`}, "outcome": "ok"})
	r, err := n.WaitRequest(context.Background(), "debian/")
	if want := (pxe.Request{Proto: "http", File: "debian/dists/bookworm/Release", Client: "10.0.0.100:4243", Status: 404}); err != nil || r != want {
		t.Errorf("WaitRequest(debian/) = %+v, %v; want %+v", r, err, want)
	}
	s.Called(map[string]any{"builtin": "pxe.wait_request", "args": []any{`"debian/"`}, "outcome": "ok"})
	if l := n.Leases(); len(l) != 1 || l[0] != (pxe.Lease{MAC: "52:54:00:be:e2:01", IP: "10.0.0.100", VendorClass: "d-i"}) {
		t.Errorf("Leases = %+v, want the recorded lease", l)
	}
	s.Called(map[string]any{"builtin": "pxe.leases", "args": []any{}, "outcome": "ok"})
	if d := s.Divergence(); d != nil {
		t.Errorf("divergence %v, want none", d)
	}
	// One call too many parts from the recording.
	if _, err := n.PublishData("late.cfg", nil); err == nil || s.Divergence() == nil {
		t.Errorf("PublishData after the recording's last call = %v, divergence %v; want both", err, s.Divergence())
	}
}

// A replayed ipmi or power call must ask the same of the BMC as the
// recorded one; its timeout= may differ.
func TestCalledArgs(t *testing.T) {
	events := ev(1, 0, "call", "builtin", "power.wait", "args", []string{`"off"`, `timeout="30s"`}, "outcome", "ok", "pos", "job.star:3:15") +
		ev(2, 0, "call", "builtin", "ipmi.bootdev", "args", []string{`"pxe"`}, "outcome", "ok", "pos", "job.star:4:17") +
		ev(3, 0, "job_end")
	rec, err := Load(writeBundle(t, "", events))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSession(rec)
	s.Called(map[string]any{"builtin": "power.wait", "args": []string{`"off"`, `timeout="2m"`}, "pos": "edited.star:3:15", "outcome": "ok"})
	if d := s.Divergence(); d != nil {
		t.Fatalf("power.wait with another timeout: divergence %v, want none", d)
	}
	s.Called(map[string]any{"builtin": "ipmi.bootdev", "args": []string{`"disk"`}, "pos": "edited.star:4:17", "outcome": "ok"})
	want := `ipmi.bootdev at edited.star:4:17: expected ipmi.bootdev("pxe") (recorded at job.star:4:17); got ipmi.bootdev("disk")`
	if d := s.Divergence(); d == nil || d.String() != want {
		t.Errorf("ipmi.bootdev(disk) divergence = %v, want %s", d, want)
	}
}

// Each stage and cleanup is compared from where the recording began it: a
// cleanup after a stage that ended early answers from the recorded
// cleanup; an attempt the recording lacks is a divergence.
func TestEnterStage(t *testing.T) {
	events := ev(1, 0, "stage_start", "stage", "boot", "attempt", 1) +
		ev(2, 0, "call", "builtin", "power.on", "args", []string{}, "outcome", "ok", "pos", "job.star:3:13") +
		ev(3, 0, "call", "builtin", "ipmi.bootdev", "args", []string{`"pxe"`}, "outcome", "ok", "pos", "job.star:4:17") +
		ev(4, 0, "stage_end", "stage", "boot", "attempt", 1) +
		ev(5, 0, "cleanup_start", "cleanup", "off") +
		ev(6, 0, "call", "builtin", "power.off", "args", []string{}, "outcome", "error", "class", "infra", "error", "power.off: BMC gone", "pos", "job.star:7:14") +
		ev(7, 0, "job_end")
	rec, err := Load(writeBundle(t, "", events))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSession(rec)
	ctl := s.Controller()
	s.EnterStage("stage", "boot", 1)
	if err := ctl.Power(context.Background(), "on"); err != nil {
		t.Fatalf("Power(on) = %v", err)
	}
	s.Called(map[string]any{"builtin": "power.on", "args": []string{}, "outcome": "ok"})
	// The stage ends (a job error of its own) before ipmi.bootdev.
	s.EnterStage("cleanup", "off", 0)
	err = ctl.Power(context.Background(), "off")
	if err == nil || !strings.Contains(err.Error(), "BMC gone (as recorded)") {
		t.Errorf("Power(off) in the cleanup = %v, want the recorded error", err)
	}
	s.Called(map[string]any{"builtin": "power.off", "args": []string{}, "outcome": "error"})
	s.Finish(false)
	if d := s.Divergence(); d != nil {
		t.Errorf("divergence %v after a stage that ended early, want none", d)
	}
	s.Finish(true)
	if d := s.Divergence(); d == nil || !strings.Contains(d.String(), "the end of stage boot: expected the recorded call ipmi.bootdev at job.star:4:17") {
		t.Errorf("divergence %v of a complete run that left out ipmi.bootdev, want it named", d)
	}

	s = NewSession(rec)
	s.EnterStage("stage", "boot", 2)
	if d := s.Divergence(); d == nil || !strings.Contains(d.Got, "stage boot attempt 2, which the recording does not have") {
		t.Errorf("attempt 2: divergence %v, want the attempt named", d)
	}
}
