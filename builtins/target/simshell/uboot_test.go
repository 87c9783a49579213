package simshell

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
)

// abDisk writes an A/B disk with two slots (slot a a system, b blank) and
// returns its path.
func abDisk(t *testing.T, env map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sda.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	d := simdisk.Disk{Env: env, Slots: []*simdisk.Image{{Size: 64 << 10}, nil}, SlotSize: 64 << 10}
	if err := simdisk.WriteDisk(f, d); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

const fwConfig = "/dev/sda1 0x0 0x4000"

// Partition devices are windows of the disk: their size is the table's,
// reads end at the partition's end and writes past it fail with ENOSPC, as
// on a Linux block device; a partition the table lacks has no node.
func TestPartitionDevices(t *testing.T) {
	disk := abDisk(t, nil)
	c := startShell(t, Config{Disks: map[string]string{"/dev/sda": disk}})
	tests := []struct{ cmd, want string }{
		{"blockdev --getsize64 /dev/sda2", "65536\n"},
		{"blockdev --getsize64 /dev/sda1", "65536\n"},
		{"test -b /dev/sda3 && echo yes", "yes\n"},
		{"test -b /dev/sda4 || echo no", "no\n"},
		{"cat /dev/sda4 2>&1; echo rc=$?", "cat: can't open '/dev/sda4': No such file or directory\nrc=1\n"},
		{"ls /dev | grep sda", "sda\nsda1\nsda2\nsda3\n"},
		{"wc -c < /dev/sda3", "65536\n"},
		{"head -c 14 /dev/sda2", "BASALTSIMDISK1"},
		// a clone of slot a into slot b, then both read the same
		{"dd if=/dev/sda2 of=/dev/sda3 bs=4096 2>/dev/null; sha256sum /dev/sda2 /dev/sda3 | cut -d' ' -f1 | uniq | wc -l", "1\n"},
		{"dd if=/dev/zero of=/dev/sda3 bs=4096 count=17 2>&1 | head -1; echo rc=$?", "dd: error writing '/dev/sda3': No space left on device\nrc=0\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
	// The write past the end did not reach the disk beyond slot b.
	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64((128+128+128+128)*512 + 0); int64(len(raw)) != want {
		t.Errorf("disk is %d bytes after writing past /dev/sda3, want %d (untouched)", len(raw), want)
	}
}

// fw_printenv and fw_setenv read and write the environment on /dev/sda1
// as /etc/fw_env.config says; the firmware-side decoder sees the change.
func TestFwEnv(t *testing.T) {
	disk := abDisk(t, map[string]string{"boot_slot": "a", "bootdelay": "3"})
	c := startShell(t, Config{Disks: map[string]string{"/dev/sda": disk}})
	c.run("echo '" + fwConfig + "' > /etc/fw_env.config")
	tests := []struct{ cmd, want string }{
		{"fw_printenv", "boot_slot=a\nbootdelay=3\n"},
		{"fw_printenv -n boot_slot", "a\n"},
		{"fw_printenv nosuch; echo rc=$?", "nosuch=\nrc=0\n"},
		{"fw_setenv boot_slot b; fw_printenv boot_slot", "boot_slot=b\n"},
		{"fw_setenv bootdelay; fw_printenv", "boot_slot=b\n"},
		{"fw_printenv -c /tmp/none 2>&1; echo rc=$?", "Configuration file wrong or corrupted\nrc=247\n"},
		{"echo '/dev/sda1 x' > /tmp/bad.config; fw_printenv -c /tmp/bad.config 2>&1; echo rc=$?", "Configuration file wrong or corrupted\nrc=234\n"},
		{"echo '/dev/sda2 0x0 0x4000' > /tmp/slot.config; fw_printenv -c /tmp/slot.config 2>&1; echo rc=$?", "Cannot read environment, using default\nCannot read default environment from file\nrc=243\n"},
		{"which fw_setenv", "/sbin/fw_setenv\n"},
	}
	for _, tt := range tests {
		if got := c.run(tt.cmd); got != tt.want {
			t.Errorf("run(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ab, err := simdisk.ReadAB(f)
	if err != nil || ab.Env["boot_slot"] != "b" || len(ab.Env) != 1 {
		t.Errorf("ReadAB after fw_setenv = %+v, %v, want env {boot_slot: b}", ab, err)
	}
}

// Differential: the same fw_setenv commands, run by libubootenv's tools on
// one copy of an environment and by the sim shell on another, leave the
// same bytes; and fw_printenv prints the same.
func TestFwEnvLibubootenv(t *testing.T) {
	if _, err := exec.LookPath("fw_setenv"); err != nil {
		t.Skip("fw_setenv not installed (Debian package libubootenv-tool)")
	}
	dir := t.TempDir()
	env, err := simdisk.EncodeEnv(map[string]string{"boot_slot": "a", "bootcmd": "run distro_bootcmd"}, simdisk.EnvSize)
	if err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(dir, "env.bin")
	if err := os.WriteFile(real, env, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(cfg, []byte(real+" 0x0 0x4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The sim's disk: the environment is partition 1 of an A/B disk.
	disk := abDisk(t, map[string]string{"boot_slot": "a", "bootcmd": "run distro_bootcmd"})
	c := startShell(t, Config{Disks: map[string]string{"/dev/sda": disk}})
	c.run("echo '" + fwConfig + "' > /etc/fw_env.config")

	tool := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, append([]string{"-c", cfg}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	steps := [][]string{
		{"fw_printenv"},
		{"fw_printenv", "-n", "boot_slot"},
		{"fw_printenv", "nosuch"},
		{"fw_setenv", "boot_slot", "b"},
		{"fw_setenv", "upgrade_available", "1"},
		{"fw_setenv", "bootcmd"},
		{"fw_setenv", "two", "words", "only-the-first"},
		{"fw_printenv"},
	}
	for _, s := range steps {
		want := tool(s[0], s[1:]...)
		got := c.run(strings.Join(s, " "))
		if got != want {
			t.Errorf("%s: sim printed %q, libubootenv %q", strings.Join(s, " "), got, want)
		}
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parts, err := simdisk.ReadPartitions(f)
	if err != nil {
		t.Fatal(err)
	}
	simEnv := make([]byte, simdisk.EnvSize)
	if _, err := f.ReadAt(simEnv, parts[0].Start); err != nil {
		t.Fatal(err)
	}
	realEnv, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	if string(simEnv) != string(realEnv) {
		t.Errorf("environment after the same fw_setenv commands differs:\nsim  %q\nreal %q", strings.TrimRight(string(simEnv[:200]), "\x00"), strings.TrimRight(string(realEnv[:200]), "\x00"))
	}
}
