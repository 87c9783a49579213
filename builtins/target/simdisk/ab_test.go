package simdisk

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func abBytes(t *testing.T, d Disk) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteDisk(&buf, d); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestABRoundTrip(t *testing.T) {
	a := testImage()
	d := Disk{Env: map[string]string{"boot_slot": "b", "bootcount": "0"}, Slots: []*Image{&a, nil}}
	raw := abBytes(t, d)
	ab, err := ReadAB(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	wantParts := []Partition{
		{Type: TypeEnv, Start: 64 << 10, Size: 64 << 10},
		{Type: TypeLinux, Start: 128 << 10, Size: 1 << 20},
		{Type: TypeLinux, Start: 128<<10 + 1<<20, Size: 1 << 20},
	}
	if d := cmp.Diff(wantParts, ab.Parts); d != "" {
		t.Errorf("ReadAB partitions (-want +got):\n%s", d)
	}
	if d := cmp.Diff(d.Env, ab.Env); d != "" {
		t.Errorf("ReadAB env (-want +got):\n%s", d)
	}
	if got := ab.Slots(); !slicesEqual(got, []int{1, 2}) {
		t.Errorf("Slots() = %v, want [1 2]", got)
	}
	if int64(len(raw)) != wantParts[2].Start+wantParts[2].Size {
		t.Errorf("len(disk) = %d, want %d", len(raw), wantParts[2].Start+wantParts[2].Size)
	}
	img, err := Parse(raw[wantParts[1].Start : wantParts[1].Start+wantParts[1].Size])
	if err != nil || img.OS != a.OS {
		t.Errorf("slot a = %+v, %v, want the image", img, err)
	}
	if _, err := Parse(raw[wantParts[2].Start:]); !errors.Is(err, ErrNoBootableDevice) {
		t.Errorf("slot b: Parse = %v, want a blank disk", err)
	}
}

func slicesEqual(a, b []int) bool { return cmp.Equal(a, b) }

func TestABErrors(t *testing.T) {
	if _, err := (Disk{}).Layout(); err == nil {
		t.Error("Layout(no slots) = nil error")
	}
	if _, err := (Disk{Slots: make([]*Image, 4)}).Layout(); err == nil {
		t.Error("Layout(4 slots) = nil error")
	}
	if _, err := (Disk{Slots: make([]*Image, 1), SlotSize: 1000}).Layout(); err == nil {
		t.Error("Layout(slot size 1000) = nil error")
	}
	if _, err := EncodeEnv(map[string]string{"a=b": "c"}, EnvSize); err == nil {
		t.Error(`EncodeEnv("a=b") = nil error`)
	}
	if _, err := EncodeEnv(map[string]string{"big": string(make([]byte, 100))}, 64); err == nil {
		t.Error("EncodeEnv(too big) = nil error")
	}
	// A single-system image and a blank disk are not A/B disks.
	for name, raw := range map[string][]byte{"image": mustBytes(t, testImage()), "blank": make([]byte, 4096)} {
		if _, err := ReadAB(bytes.NewReader(raw)); !errors.Is(err, ErrNoPartitionTable) {
			t.Errorf("ReadAB(%s) = %v, want ErrNoPartitionTable", name, err)
		}
	}
	// A torn environment: the CRC no longer matches.
	raw := abBytes(t, Disk{Slots: []*Image{nil, nil}, SlotSize: 64 << 10})
	raw[64<<10+10] ^= 1
	ab, err := ReadAB(bytes.NewReader(raw))
	if err != nil || ab.Env != nil || !errors.Is(ab.EnvErr, ErrBadEnv) {
		t.Errorf("ReadAB(torn env) = %+v, %v, want Env nil and ErrBadEnv", ab, err)
	}
}

// Differential: util-linux's sfdisk reads the partition table WriteDisk
// writes as ReadPartitions does.
func TestPartitionTableSfdisk(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk not installed (Debian package fdisk)")
	}
	p := filepath.Join(t.TempDir(), "ab.img")
	raw := abBytes(t, Disk{Slots: []*Image{nil, nil, nil}, SlotSize: 256 << 10})
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sfdisk", "--json", p).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var dump struct {
		PartitionTable struct {
			Label      string `json:"label"`
			Partitions []struct {
				Start, Size int64
				Type        string
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("sfdisk --json: %v: %s", err, out)
	}
	parts, err := ReadPartitions(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if dump.PartitionTable.Label != "dos" || len(dump.PartitionTable.Partitions) != len(parts) {
		t.Fatalf("sfdisk sees %s", out)
	}
	for i, sp := range dump.PartitionTable.Partitions {
		want := Partition{Start: sp.Start * Sector, Size: sp.Size * Sector}
		typ := map[string]byte{"da": TypeEnv, "83": TypeLinux}[sp.Type]
		want.Type = typ
		if parts[i] != want {
			t.Errorf("partition %d = %+v, sfdisk says %+v", i+1, parts[i], want)
		}
	}
}

// Differential: libubootenv's fw_printenv reads the environment EncodeEnv
// writes.
func TestEnvFwPrintenv(t *testing.T) {
	if _, err := exec.LookPath("fw_printenv"); err != nil {
		t.Skip("fw_printenv not installed (Debian package libubootenv-tool)")
	}
	dir := t.TempDir()
	env, err := EncodeEnv(map[string]string{"boot_slot": "b", "bootargs": "console=ttyAMA0 quiet"}, EnvSize)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "env")
	os.WriteFile(p, env, 0o644)
	cfg := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfg, []byte(p+" 0x0 0x4000\n"), 0o644)
	out, err := exec.Command("fw_printenv", "-c", cfg).CombinedOutput()
	if want := "boot_slot=b\nbootargs=console=ttyAMA0 quiet\n"; err != nil || string(out) != want {
		t.Errorf("fw_printenv = %q, %v, want %q", out, err, want)
	}
}

func FuzzReadAB(f *testing.F) {
	var buf bytes.Buffer
	WriteDisk(&buf, Disk{Slots: []*Image{nil, nil}, SlotSize: 4096})
	f.Add(buf.Bytes()[:EnvSize+64<<10])
	f.Add(mbr([]Partition{{Type: TypeEnv, Start: 512, Size: 1 << 40}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		ab, err := ReadAB(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, i := range ab.Slots() {
			p := ab.Parts[i]
			if p.Start < 0 || p.Size <= 0 {
				t.Fatalf("slot partition %+v", p)
			}
		}
		if ab.Env != nil {
			if _, err := EncodeEnv(ab.Env, EnvSize); err != nil && len(ab.Env) < 10 {
				t.Logf("re-encode: %v", err)
			}
		}
	})
}
