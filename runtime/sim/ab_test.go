package sim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/basalt-lab/basalt/builtins/target/simdisk"
)

// The firmware of an A/B disk boots the slot boot_slot names, with its
// root= on the kernel command line, and skips a slot that does not verify.
func TestBootSlot(t *testing.T) {
	v1 := &simdisk.Image{OS: "v1", Cmdline: "console=ttyAMA0 ro", Size: 64 << 10}
	v2 := &simdisk.Image{OS: "v2", Cmdline: "console=ttyAMA0 ro", Size: 64 << 10}
	for _, tc := range []struct {
		name       string
		env        map[string]string
		slots      []*simdisk.Image
		corrupt    int // slot whose image gets a flipped byte, -1 none
		tornEnv    bool
		wantOS     string
		wantCmd    string
		wantOut    string // on the console
		wantEvents string // the sim_boot event's slot and fallback
		wantErr    bool
	}{
		{"boot_slot a", map[string]string{"boot_slot": "a"}, []*simdisk.Image{v1, v2}, -1, false,
			"v1", "console=ttyAMA0 ro root=/dev/sda2", "Booting slot a from /dev/sda2", "a false", false},
		{"boot_slot b", map[string]string{"boot_slot": "b"}, []*simdisk.Image{v1, v2}, -1, false,
			"v2", "console=ttyAMA0 ro root=/dev/sda3", "Booting slot b from /dev/sda3", "b false", false},
		{"corrupt b falls back to a", map[string]string{"boot_slot": "b"}, []*simdisk.Image{v1, v2}, 1, false,
			"v1", "console=ttyAMA0 ro root=/dev/sda2", "slot b (/dev/sda3): no bootable device: checksum mismatch", "a true", false},
		{"blank b falls back to a", map[string]string{"boot_slot": "b"}, []*simdisk.Image{v1, nil}, -1, false,
			"v1", "console=ttyAMA0 ro root=/dev/sda2", "slot b (/dev/sda3): no bootable device: disk is blank", "a true", false},
		{"torn environment: default boot_slot=a", map[string]string{"boot_slot": "b"}, []*simdisk.Image{v1, v2}, -1, true,
			"v1", "console=ttyAMA0 ro root=/dev/sda2", "*** Warning - bad CRC, using default environment", "a false", false},
		{"no slot boots", map[string]string{"boot_slot": "a"}, []*simdisk.Image{nil, nil}, -1, false,
			"", "", "slot a (/dev/sda2): no bootable device", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []string
			n, err := Start(context.Background(), Config{Dir: t.TempDir(), Emit: func(typ string, f map[string]any) {
				if typ == "sim_boot" && f["slot"] != nil {
					events = append(events, f["slot"].(string)+" "+map[bool]string{true: "true", false: "false"}[f["fallback"].(bool)])
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			var buf bytes.Buffer
			if err := simdisk.WriteDisk(&buf, simdisk.Disk{Env: tc.env, Slots: tc.slots, SlotSize: 64 << 10}); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			parts, _ := simdisk.ReadPartitions(bytes.NewReader(raw))
			if tc.corrupt >= 0 {
				raw[parts[1+tc.corrupt].Start+simdisk.HeaderSize+100] ^= 0xff
			}
			if tc.tornEnv {
				raw[parts[0].Start+20] ^= 0xff
			}
			f, err := os.OpenFile(n.Disk(), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(raw, 0)
			f.Close()

			var out bytes.Buffer
			img, cmdline, err := n.loadDisk(&out)
			if tc.wantErr {
				if !errors.Is(err, simdisk.ErrNoBootableDevice) {
					t.Errorf("loadDisk = %v, want ErrNoBootableDevice", err)
				}
			} else if err != nil {
				t.Fatalf("loadDisk: %v; console %q", err, out.String())
			} else if img.OS != tc.wantOS || cmdline != tc.wantCmd {
				t.Errorf("loadDisk = %s, %q, want %s, %q", img.OS, cmdline, tc.wantOS, tc.wantCmd)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("console = %q, want it to say %q", out.String(), tc.wantOut)
			}
			if got := strings.Join(events, ","); got != tc.wantEvents {
				t.Errorf("sim_boot events = %q, want %q", got, tc.wantEvents)
			}
		})
	}
}
