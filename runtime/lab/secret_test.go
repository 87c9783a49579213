package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The value of a secret must not reach any output: device show, fmt with
// any verb, JSON, slog, list rows, facts, or error messages.
func TestSecretNeverPrinted(t *testing.T) {
	const envValue = "s3cr3t-ENV-xyzzy"
	const fileValue = "s3cr3t-FILE-plugh"
	t.Setenv("BASALT_TEST_PW", envValue)
	dir := writeLab(t, map[string]string{
		"devices/hb1.star": `device(type = "highbank", ipmi_host = "h1", ipmi_password = secret("BASALT_TEST_PW"))`,
		"devices/hb2.star": `device(type = "highbank", ipmi_host = "h2", ipmi_password = secret(file = "pw"))`,
		"pw":               fileValue + "\n",
	})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"hb1": envValue, "hb2": fileValue} {
		d, err := l.Device(name)
		if err != nil {
			t.Fatal(err)
		}
		if d.IPMI.Password.Value() != value {
			t.Fatalf("%s password = wrong value, want the one set (test setup)", name)
		}
		var outputs []string
		var show bytes.Buffer
		if err := FormatDevice(&show, d); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(show.String(), d.IPMI.Password.String()) {
			t.Errorf("FormatDevice(%s) = %q, want the secret reference %s", name, show.String(), d.IPMI.Password)
		}
		outputs = append(outputs, show.String())
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
			outputs = append(outputs, fmt.Sprintf(verb, d), fmt.Sprintf(verb, *d), fmt.Sprintf(verb, d.IPMI), fmt.Sprintf(verb, d.IPMI.Password))
		}
		for _, v := range []any{d, d.IPMI, d.IPMI.Password, Facts(d), List(l)} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			outputs = append(outputs, string(b))
		}
		var logs bytes.Buffer
		slog.New(slog.NewTextHandler(&logs, nil)).Info("device", "device", d, "ipmi", d.IPMI, "password", d.IPMI.Password)
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("device", "ipmi", d.IPMI, "password", d.IPMI.Password)
		outputs = append(outputs, logs.String(), fmt.Sprint(Facts(d)))
		var list bytes.Buffer
		WriteList(&list, List(l))
		outputs = append(outputs, list.String())

		for i, out := range outputs {
			if strings.Contains(out, value) || strings.Contains(out, fmt.Sprintf("%x", value)) {
				t.Errorf("%s: output %d shows the secret: %s", name, i, out)
			}
		}
	}

	// Error paths: a plain-string password is refused without echoing it,
	// and a later error in a file that holds a set secret does not show it.
	bad := writeLab(t, map[string]string{
		"devices/a.star": `device(type = "highbank", ipmi_host = "h", ipmi_password = "` + envValue + `")`,
		"devices/b.star": `device(type = "highbank", ipmi_host = "h", ipmi_password = secret("BASALT_TEST_PW"), mac = "bad")`,
		"devices/c.star": `device(type = "highbank", ipmi_host = "h", ipmi_password = secret("BASALT_TEST_PW") + "x")`,
	})
	bl, err := Load(bad)
	if err != nil {
		t.Fatalf("Load(bad lab) = %v, want broken devices, not a broken lab", err)
	}
	var errs []error
	for _, d := range bl.Devices {
		errs = append(errs, d.Err)
	}
	var rows strings.Builder
	WriteList(&rows, List(bl))
	err = fmt.Errorf("%w\n%s", errors.Join(errs...), rows.String())
	for _, f := range []string{"a.star", "b.star", "c.star"} {
		if !strings.Contains(err.Error(), filepath.Join(bad, "devices", f)) {
			t.Errorf("Load(bad lab) = %q, want an error for %s", err, f)
		}
	}
	if strings.Contains(err.Error(), envValue) {
		t.Errorf("Load(bad lab) = %q, which shows the secret", err)
	}
}

// secret(file=) names a file under the lab directory: a path that leaves it
// (absolute, "..", a symlink out) is refused with the file and line of the
// call, and the outside file's content is never read into the password.
func TestSecretFileConfinedToLab(t *testing.T) {
	const outside = "outside-value-plugh"
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "x"), []byte(outside), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := writeLab(t, map[string]string{
		"pw":     "inside-value\n",
		"sub/pw": "inside-sub\n",
	})
	// The lab directory sits next to the outside file.
	labDir := filepath.Join(parent, "lab")
	if err := os.Rename(dir, labDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(parent, "x"), filepath.Join(labDir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/pw", filepath.Join(labDir, "innerlink")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, want, wantErr string
	}{
		{"pw", "inside-value", ""},
		{"sub/pw", "inside-sub", ""},
		{"sub/../pw", "inside-value", ""},
		{"innerlink", "inside-sub", ""},
		{"../x", "", `fz.star:1:\d+: secret: file "../x" is outside the lab directory`},
		{"sub/../../x", "", `secret: file "sub/../../x" is outside the lab directory`},
		{filepath.Join(parent, "x"), "", `is outside the lab directory`},
		{"link", "", `secret file .*link leads outside the lab directory`},
	} {
		src := fmt.Sprintf("device(type = %q, ipmi_host = \"h\", ipmi_password = secret(file = %q))", "highbank", tc.file)
		env := &evalEnv{kind: kindDevice, file: "devices/fz.star", base: "fz", labDir: labDir, types: BuiltinTypes()}
		v, err := evalFile(env, []byte(src))
		got := ""
		if err == nil {
			// Loading takes the reference only; a run reads the value.
			var pw Secret
			pw, err = v.(*Device).IPMI.Password.resolve(labDir)
			got = pw.Value()
		}
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("secret(file = %q) = %q, %v, want %q from the lab's file", tc.file, got, err, tc.want)
			}
			continue
		}
		if err == nil || !regexp.MustCompile(tc.wantErr).MatchString(err.Error()) {
			t.Errorf("secret(file = %q) = %v, want an error matching %q", tc.file, err, tc.wantErr)
		}
		if got == outside {
			t.Errorf("secret(file = %q) read the file outside the lab", tc.file)
		}
	}
}
