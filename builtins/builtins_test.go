package builtins

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

type rec struct{ events []map[string]any }

func (r *rec) Emit(typ string, f map[string]any) {
	if typ == "call" {
		r.events = append(r.events, f)
	}
}
func (r *rec) TestCase(TestCase)                                  {}
func (r *rec) Print(string)                                       {}
func (r *rec) Console() io.Writer                                 { return io.Discard }
func (r *rec) Artifact(string, io.Reader, string) (string, error) { return "", nil }

func call(t *testing.T, env *Env, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) error {
	t.Helper()
	thread := &starlark.Thread{Name: "test"}
	Attach(thread, env)
	_, err := starlark.Call(thread, fn, args, kwargs)
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Unwrap()
	}
	return err
}

func TestWrapPrefixesErrorsOnce(t *testing.T) {
	for _, c := range []struct{ fnErr, want string }{
		{"boom", "m.f: boom"},
		{"m.f: boom", "m.f: boom"},
		{"m.f(5s): context deadline exceeded", "m.f(5s): context deadline exceeded"},
		{"m.f_other: boom", "m.f: m.f_other: boom"},
		{"m.fboom", "m.f: m.fboom"},
	} {
		for _, action := range []bool{false, true} {
			tab := &Table{Name: "m", Members: []Builtin{{Name: "f", Action: action,
				Fn: func(*starlark.Thread, string, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
					return nil, Device(errors.New(c.fnErr))
				}}}}
			err := call(t, &Env{Rec: &rec{}}, tab.Module().Members["f"], nil, nil)
			if err == nil || err.Error() != c.want {
				t.Errorf("m.f() failing with %q (action %t) = %v, want %q", c.fnErr, action, err, c.want)
			}
			if ClassOf(err) != ClassDevice {
				t.Errorf("class of m.f() failing with %q = %s, want device", c.fnErr, ClassOf(err))
			}
		}
	}
}

func TestWrapRefusesActionsAtTopLevel(t *testing.T) {
	called := false
	tab := &Table{Name: "m", Members: []Builtin{{Name: "act", Action: true,
		Fn: func(*starlark.Thread, string, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			called = true
			return starlark.None, nil
		}}}}
	err := call(t, &Env{Declaring: true}, tab.Module().Members["act"], nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "m.act: action builtins may only be called from a stage") || ClassOf(err) != ClassJob {
		t.Errorf("m.act() at top level = %v (%s), want a job error", err, ClassOf(err))
	}
	if called {
		t.Errorf("m.act() at top level ran its Fn")
	}
}

// send is shaped like sol.send: text is secret when secret=True.
var sendTable = &Table{Name: "m", Members: []Builtin{{
	Name: "send", Params: "text, delay=None, secret=False", Action: true,
	Secret: []string{"text"}, SecretIf: "secret",
	Fn: func(_ *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var text string
		var delay starlark.Value
		var secret bool
		if err := starlark.UnpackArgs(name, args, kwargs, "text", &text, "delay?", &delay, "secret?", &secret); err != nil {
			return nil, Job(err)
		}
		if strings.HasPrefix(text, "fail") {
			return nil, Device(fmt.Errorf("echo of %q differs", text))
		}
		return starlark.None, nil
	},
}}}

func TestWrapRedactsSecretParams(t *testing.T) {
	s := func(v string) starlark.String { return starlark.String(v) }
	kw := func(k string, v starlark.Value) starlark.Tuple { return starlark.Tuple{s(k), v} }
	for _, c := range []struct {
		args     starlark.Tuple
		kwargs   []starlark.Tuple
		wantArgs string
		wantErr  string
	}{
		{starlark.Tuple{s("hunter2")}, nil, `["hunter2"]`, ""},
		{starlark.Tuple{s("hunter2")}, []starlark.Tuple{kw("secret", starlark.True)}, `["<redacted>" secret=True]`, ""},
		{nil, []starlark.Tuple{kw("text", s("hunter2")), kw("secret", starlark.True)}, `[text="<redacted>" secret=True]`, ""},
		{starlark.Tuple{s("hunter2"), starlark.None, starlark.True}, nil, `["<redacted>" None True]`, ""},
		{starlark.Tuple{s("failhunter2")}, []starlark.Tuple{kw("secret", starlark.True)}, `["<redacted>" secret=True]`,
			`m.send: echo of "<redacted>" differs`},
		// UnpackArgs fails, but secret=True was given: the text stays out.
		{starlark.Tuple{s("hunter2")}, []starlark.Tuple{kw("secret", starlark.True), kw("bogus", starlark.True)},
			`["<redacted>" secret=True bogus=True]`, "m.send: unexpected keyword argument"},
	} {
		r := &rec{}
		err := call(t, &Env{Rec: r}, sendTable.Module().Members["send"], c.args, c.kwargs)
		if (err == nil) != (c.wantErr == "") || err != nil && !strings.HasPrefix(err.Error(), c.wantErr) {
			t.Errorf("m.send(%v, %v) = %v, want error %q", c.args, c.kwargs, err, c.wantErr)
		}
		if len(r.events) != 1 {
			t.Fatalf("m.send(%v, %v) recorded %d call events, want 1", c.args, c.kwargs, len(r.events))
		}
		ev := r.events[0]
		if got := fmt.Sprint(ev["args"]); got != c.wantArgs {
			t.Errorf("m.send(%v, %v) event args = %s, want %s", c.args, c.kwargs, got, c.wantArgs)
		}
		secret := len(c.kwargs) > 0 || len(c.args) > 1
		if all := fmt.Sprint(ev) + fmt.Sprint(err); secret && strings.Contains(all, "hunter2") {
			t.Errorf("m.send(%v, %v) leaks the secret: event %v, error %v", c.args, c.kwargs, ev, err)
		}
		if c.wantErr != "" && ev["error"] != err.Error() {
			t.Errorf("m.send(%v, %v) event error = %v, want %q", c.args, c.kwargs, ev["error"], err)
		}
	}
}

func TestTimeoutUnpack(t *testing.T) {
	for _, c := range []struct {
		in   starlark.Value
		want time.Duration
		err  string
	}{
		{starlark.None, 0, ""},
		{starlark.String("30s"), 30 * time.Second, ""},
		{starlark.MakeInt(2), 2 * time.Second, ""},
		{starlark.Float(0.5), 500 * time.Millisecond, ""},
		{starlark.MakeInt(0), 0, "must be positive (got 0); omit it for the stage's deadline"},
		{starlark.Float(0), 0, "must be positive (got 0.0)"},
		{starlark.MakeInt(-1), 0, "must be positive (got -1)"},
		{starlark.String("0s"), 0, `must be positive (got "0s")`},
		{starlark.String("-5m"), 0, `must be positive (got "-5m")`},
		{starlark.Float(1e-12), 0, "must be positive"},
		{starlark.String("soon"), 0, "want a duration like"},
		{starlark.True, 0, "want a duration string"},
	} {
		var got Timeout
		err := got.Unpack(c.in)
		if c.err == "" && (err != nil || got.D() != c.want) {
			t.Errorf("Timeout.Unpack(%v) = %v, %v; want %v", c.in, got.D(), err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Timeout.Unpack(%v) = %v, %v; want error %q", c.in, got.D(), err, c.err)
		}
	}
	if got := (Timeout{}).Or(time.Hour); got != time.Hour {
		t.Errorf("Timeout{}.Or(1h) = %v, want 1h", got)
	}
}

func TestCheckParams(t *testing.T) {
	fn := func(pairs ...any) Func {
		return func(_ *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return starlark.None, starlark.UnpackArgs(name, args, kwargs, pairs...)
		}
	}
	var a, b, c string
	for _, tc := range []struct {
		params string
		fn     Func
		want   string // "" for agreement
	}{
		{"a, b=None", fn("a", &a, "b?", &b), ""},
		{"", fn(), ""},
		{"a=None", fn("a?", &a), ""},
		{"a, b=None", fn("a", &a, "b?", &b, "c?", &c), "UnpackArgs takes more parameters than the 2 Params lists"},
		{"a, b=None, c=None", fn("a", &a, "b?", &b), "UnpackArgs takes 2 parameters, Params lists 3"},
		{"a, c=None", fn("a", &a, "b?", &b), "UnpackArgs has no parameter c"},
		{"b, a=None", fn("a", &a, "b?", &b), "want one for parameter b"},
		{"a=None, b=None", fn("a", &a, "b?", &b), "but Params has no required parameter"},
		{"a, b", fn("a", &a, "b?", &b), ""}, // only the first required one is checked
		{"a", fn("a?", &a), `want "missing argument for a"`},
	} {
		tab := &Table{Name: "m", Members: []Builtin{{Name: "f", Params: tc.params, Fn: tc.fn}}}
		errs := CheckParams(tab)
		got := fmt.Sprint(errs)
		if tc.want == "" && len(errs) > 0 || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("CheckParams(%q) = %s, want %q", tc.params, got, tc.want)
		}
	}
}

func TestCheckParamsSecretNamesAParam(t *testing.T) {
	tab := &Table{Name: "m", Members: []Builtin{{Name: "send", Params: "text, secret=False",
		Secret: []string{"txt"}, SecretIf: "secrets",
		Fn: func(_ *starlark.Thread, name string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var text string
			var secret bool
			return starlark.None, starlark.UnpackArgs(name, args, kwargs, "text", &text, "secret?", &secret)
		}}}}
	got := fmt.Sprint(CheckParams(tab))
	for _, want := range []string{"Secret names txt, which Params does not list", "Secret names secrets, which Params does not list"} {
		if !strings.Contains(got, want) {
			t.Errorf("CheckParams(Secret txt, SecretIf secrets) = %s, want %q", got, want)
		}
	}
}
