package simdisk

// A/B disks: the layout a board with two root slots has (RAUC's and
// Mender's U-Boot integrations, the OLPC upgrade scheme of seed 003):
//
//	sector 0      an MBR partition table (the IBM PC format that fdisk and
//	              sfdisk write: four 16-byte entries at byte 446, 0x55 0xAA
//	              at byte 510)
//	partition 1   type 0xda (non-FS data): the bootloader's environment,
//	              U-Boot's raw env_t at offset 0 (CONFIG_ENV_IS_IN_MMC with
//	              an env partition): a little-endian CRC-32 of the data,
//	              then "name=value\0" entries, a final "\0", zero padding
//	              to EnvSize. libubootenv's fw_printenv and fw_setenv read
//	              and write it given /etc/fw_env.config "/dev/sda1 0x0 0x4000".
//	partition 2.. type 0x83 (Linux): root slot a, b, ...: each holds a sim
//	              disk image ([Write]) or nothing (zeros: a blank slot)
//
// The firmware boots the slot named by the environment's boot_slot and,
// when that slot does not verify, the next one (see runtime/sim).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"strings"
)

// Sector is the disk's logical sector size.
const Sector = 512

// EnvSize is the size of the bootloader environment (CONFIG_ENV_SIZE).
const EnvSize = 0x4000

// Partition types of the A/B layout (the MBR system IDs fdisk lists).
const (
	TypeEnv   = 0xda // Non-FS data
	TypeLinux = 0x83
)

// Partition is one primary partition of an MBR partition table.
type Partition struct {
	Type  byte
	Start int64 // bytes from the start of the disk
	Size  int64 // bytes
}

// ErrNoPartitionTable is returned by ReadPartitions for a disk without an
// MBR boot signature.
var ErrNoPartitionTable = errors.New("no partition table")

// ReadPartitions reads the MBR partition table of the disk r: the used
// primary entries in order (entry i is partition i+1; unused entries are
// zero Partitions, trailing ones dropped).
func ReadPartitions(r io.ReaderAt) ([]Partition, error) {
	mbr := make([]byte, Sector)
	if _, err := r.ReadAt(mbr, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("simdisk: read partition table: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, ErrNoPartitionTable
	}
	var parts []Partition
	for i := range 4 {
		e := mbr[446+16*i : 446+16*(i+1)]
		p := Partition{Type: e[4],
			Start: int64(binary.LittleEndian.Uint32(e[8:12])) * Sector,
			Size:  int64(binary.LittleEndian.Uint32(e[12:16])) * Sector}
		if p.Type == 0 || p.Size == 0 {
			p = Partition{}
		}
		parts = append(parts, p)
	}
	for len(parts) > 0 && parts[len(parts)-1] == (Partition{}) {
		parts = parts[:len(parts)-1]
	}
	return parts, nil
}

// mbr returns sector 0 holding parts. CHS fields hold the "beyond CHS"
// marker FE FF FF that fdisk writes for LBA-addressed partitions.
func mbr(parts []Partition) []byte {
	b := make([]byte, Sector)
	// A fixed disk identifier (byte 440), so the same inputs give the same image.
	copy(b[440:444], []byte{0x62, 0x61, 0x73, 0x74}) // "bast"
	for i, p := range parts {
		e := b[446+16*i:]
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = p.Type
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:12], uint32(p.Start/Sector))
		binary.LittleEndian.PutUint32(e[12:16], uint32(p.Size/Sector))
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

// EncodeEnv returns the raw environment of vars, size bytes: CRC-32 (IEEE,
// little-endian, over the data after it), then the entries sorted by name,
// as U-Boot's env export and libubootenv write them.
func EncodeEnv(vars map[string]string, size int) ([]byte, error) {
	return EncodeEnvOver(make([]byte, size), vars)
}

// EncodeEnvOver writes the environment of vars over a copy of old, an
// environment as read from the disk, and returns it: the entries, a final
// "\0", and old's bytes after that, as libubootenv's fw_setenv leaves them
// (the CRC is over all of it).
func EncodeEnvOver(old []byte, vars map[string]string) ([]byte, error) {
	size := len(old)
	names := make([]string, 0, len(vars))
	for k := range vars {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(vars[k], "\x00") {
			return nil, fmt.Errorf("simdisk: bad environment variable %q", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	b := bytes.Clone(old)
	off := 4
	for _, k := range names {
		e := k + "=" + vars[k] + "\x00"
		if off+len(e)+1 > size {
			return nil, fmt.Errorf("simdisk: environment does not fit %d bytes", size)
		}
		off += copy(b[off:], e)
	}
	b[off] = 0
	binary.LittleEndian.PutUint32(b[:4], crc32.ChecksumIEEE(b[4:]))
	return b, nil
}

// ErrBadEnv is wrapped by DecodeEnv's errors: the CRC does not match (a
// blank or torn environment), and U-Boot falls back to its default one.
var ErrBadEnv = errors.New("bad CRC, using default environment")

// DecodeEnv parses a raw environment.
func DecodeEnv(b []byte) (map[string]string, error) {
	if len(b) < 5 || binary.LittleEndian.Uint32(b[:4]) != crc32.ChecksumIEEE(b[4:]) {
		return nil, ErrBadEnv
	}
	vars := map[string]string{}
	for _, e := range bytes.Split(b[4:], []byte{0}) {
		if len(e) == 0 {
			break // "\0\0" ends the list
		}
		k, v, ok := strings.Cut(string(e), "=")
		if ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// Disk describes an A/B disk image.
type Disk struct {
	// Env is the bootloader environment; default {"boot_slot": "a"}.
	Env map[string]string
	// Slots are the root slots a, b, ... (at least one); a nil entry is a
	// blank slot.
	Slots []*Image
	// SlotSize is the size of each slot partition in bytes, a multiple of
	// Sector; default the largest slot image's size.
	SlotSize int64
}

// envPartSize is the size of the environment partition: the environment
// and room for a redundant copy, as boards reserve.
const envPartSize = 64 << 10

// firstLBA is where the first partition starts (64 KiB: small, as the
// sim's disks are; real tools align to 1 MiB).
const firstLBA = 128

// SlotName is the name of slot i: "a", "b", ...
func SlotName(i int) string { return string(rune('a' + i)) }

// SlotIndex is the index of the slot named s, or -1.
func SlotIndex(s string) int {
	if len(s) == 1 && s[0] >= 'a' && s[0] <= 'z' {
		return int(s[0] - 'a')
	}
	return -1
}

// Layout returns the partitions of d: the environment, then the slots.
func (d Disk) Layout() ([]Partition, error) {
	if len(d.Slots) < 1 || len(d.Slots) > 3 {
		return nil, fmt.Errorf("simdisk: %d slots: an MBR holds the environment and 1 to 3 slots", len(d.Slots))
	}
	size := d.SlotSize
	for _, img := range d.Slots {
		if img != nil {
			size = max(size, img.withDefaults().Size)
		}
	}
	if size == 0 {
		size = DefaultSize
	}
	if size%Sector != 0 {
		return nil, fmt.Errorf("simdisk: slot size %d is not a multiple of %d", size, Sector)
	}
	parts := []Partition{{Type: TypeEnv, Start: firstLBA * Sector, Size: envPartSize}}
	at := parts[0].Start + parts[0].Size
	for range d.Slots {
		parts = append(parts, Partition{Type: TypeLinux, Start: at, Size: size})
		at += size
	}
	return parts, nil
}

// WriteDisk writes the raw A/B disk d to w.
func WriteDisk(w io.Writer, d Disk) error {
	parts, err := d.Layout()
	if err != nil {
		return err
	}
	env := d.Env
	if env == nil {
		env = map[string]string{"boot_slot": "a"}
	}
	envb, err := EncodeEnv(env, EnvSize)
	if err != nil {
		return err
	}
	cw := &countWriter{w: w}
	pad := func(to int64) error {
		zero := make([]byte, 64<<10)
		for cw.n < to {
			if _, err := cw.Write(zero[:min(int64(len(zero)), to-cw.n)]); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := cw.Write(mbr(parts)); err != nil {
		return fmt.Errorf("simdisk: write partition table: %w", err)
	}
	if err := pad(parts[0].Start); err != nil {
		return fmt.Errorf("simdisk: write disk: %w", err)
	}
	if _, err := cw.Write(envb); err != nil {
		return fmt.Errorf("simdisk: write environment: %w", err)
	}
	for i, img := range d.Slots {
		p := parts[1+i]
		if err := pad(p.Start); err != nil {
			return fmt.Errorf("simdisk: write disk: %w", err)
		}
		if img != nil {
			im := *img
			im.Size = p.Size
			if err := Write(cw, im); err != nil {
				return fmt.Errorf("slot %s: %w", SlotName(i), err)
			}
		}
		if err := pad(p.Start + p.Size); err != nil {
			return fmt.Errorf("simdisk: write disk: %w", err)
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ABDisk is what the firmware finds on an A/B disk.
type ABDisk struct {
	Parts []Partition
	Env   map[string]string // nil when the environment's CRC is bad
	// EnvErr is why Env is nil.
	EnvErr error
}

// ReadAB reads the partition table and the environment of an A/B disk. It
// returns ErrNoPartitionTable, or an error wrapping it, for any other disk.
func ReadAB(r io.ReaderAt) (*ABDisk, error) {
	parts, err := ReadPartitions(r)
	if err != nil {
		return nil, err
	}
	if len(parts) < 2 || parts[0].Type != TypeEnv || parts[0].Size < EnvSize {
		return nil, fmt.Errorf("%w: not an A/B layout (partition 1 is not a %d-byte environment of type 0x%02x)", ErrNoPartitionTable, EnvSize, TypeEnv)
	}
	d := &ABDisk{Parts: parts}
	b := make([]byte, EnvSize)
	if _, err := r.ReadAt(b, parts[0].Start); err != nil && err != io.EOF {
		return nil, fmt.Errorf("simdisk: read environment: %w", err)
	}
	d.Env, d.EnvErr = DecodeEnv(b)
	return d, nil
}

// Slots returns the slot partitions' indexes into Parts (partition number
// minus one), in slot order a, b, ...
func (d *ABDisk) Slots() []int {
	var out []int
	for i, p := range d.Parts {
		if i > 0 && p.Type == TypeLinux {
			out = append(out, i)
		}
	}
	return slices.Clip(out)
}
