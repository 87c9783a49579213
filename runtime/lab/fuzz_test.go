package lab

import (
	"strings"
	"testing"
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
