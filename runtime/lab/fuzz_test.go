package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"
)

// FuzzLoadDevice feeds random device files to the evaluator: it must never
// panic, and every error must name the file.
func FuzzLoadDevice(f *testing.F) {
	for _, seed := range []string{
		`device(type = "sim")`,
		`device(type = "highbank", ipmi_host = "h", ipmi_password = secret("FUZZ_PW"), mac = "fc:2f:40:17:da:28")`,
		`device(type = "qemu", console_command = "telnet localhost 4006", power_command = {"reset": "pdu"})`,
		`device(type = "sim", sim = {"udp_loss": 0.5, "console_drops": 1}, facts = [1, "a", {"b": None}])`,
		`device(type = "sim", ipmi_password = secret(file = "pw"))`,
		`device(type = "sim", ipmi_password = secret(file = "../pw"))`,
		"l = []\nl.append(l)\ndevice(type = 'sim', facts = {'l': l})",
		`x = [i for i in range(100000)]`,
		`device(`,
		"\xff\xfe",
		`lab(); device_type(); secret("X")`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	types := BuiltinTypes()
	f.Fuzz(func(t *testing.T, src []byte) {
		const file = "devices/fz.star"
		env := &evalEnv{kind: kindDevice, file: file, base: "fz", labDir: dir, types: types}
		v, err := evalFile(env, src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), file) {
				t.Errorf("evalFile(%q) = %q, want an error starting with %s", src, err, file)
			}
			return
		}
		d, ok := v.(*Device)
		if !ok || d.Name != "fz" || d.Type == nil || d.IPMI.Port == 0 || d.Console.Transport == "" {
			t.Errorf("evalFile(%q) = %+v, want a complete device fz", src, v)
		}
	})
}

// FuzzSecretFile names any path in secret(file=): the lab loader must never
// read a file outside the lab directory (next to it, by "..", by an
// absolute path or through a symlink), never panic, and name the device
// file in every error.
func FuzzSecretFile(f *testing.F) {
	for _, seed := range []string{"pw", "sub/pw", "../x", "sub/../../x", "/etc/passwd", "link", "sub/link", "./pw",
		"", ".", "..", "sub/", "pw\x00", "//x", `..\x`, "sub/../pw", "~/x", "lab/../../x"} {
		f.Add(seed)
	}
	parent := f.TempDir()
	const outside = "outside-value"
	os.WriteFile(filepath.Join(parent, "x"), []byte(outside), 0o600)
	dir := filepath.Join(parent, "lab")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("inside\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "sub", "pw"), []byte("inside\n"), 0o600)
	os.Symlink(filepath.Join(parent, "x"), filepath.Join(dir, "link"))
	os.Symlink("../../x", filepath.Join(dir, "sub", "link"))
	types := BuiltinTypes()
	f.Fuzz(func(t *testing.T, path string) {
		const file = "devices/fz.star"
		src := `device(type = "sim", ipmi_password = secret(file = ` + starlark.String(path).String() + `))`
		env := &evalEnv{kind: kindDevice, file: file, base: "fz", labDir: dir, types: types}
		v, err := evalFile(env, []byte(src))
		if err != nil {
			if !strings.HasPrefix(err.Error(), file) {
				t.Errorf("secret(file = %q) = %q, want an error starting with %s", path, err, file)
			}
			return
		}
		pw, err := v.(*Device).IPMI.Password.resolve(dir)
		if got := pw.Value(); got != "" && got != "inside" {
			t.Errorf("secret(file = %q) read %q, want only a file under the lab directory", path, got)
		}
		if err == nil && pw.Value() != "inside" {
			t.Errorf("secret(file = %q) loaded without a password or an error", path)
		}
	})
}
