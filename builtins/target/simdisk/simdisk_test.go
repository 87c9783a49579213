package simdisk

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ulikunitz/xz"
)

func testImage() Image {
	return Image{
		OS:       "Ubuntu 12.04 LTS",
		Kernel:   "3.5.0-27-highbank",
		Hostname: "calxeda01",
		Cmdline:  "console=ttyAMA0 root=/dev/sda2",
		Files:    map[string]string{"/etc/os-release": "NAME=Ubuntu\n", "/root/hello.txt": "hi\n"},
		Size:     1 << 20,
	}
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int64{HeaderSize + 4096, 1 << 20, DefaultSize, 0, 9<<20 + 123} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			img := testImage()
			img.Size = size
			raw, err := Bytes(img)
			if err != nil {
				t.Fatal(err)
			}
			want := img.withDefaults()
			if int64(len(raw)) != want.Size {
				t.Errorf("len(Bytes(size %d)) = %d, want %d", size, len(raw), want.Size)
			}
			got, err := Parse(raw)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if d := cmp.Diff(want, *got); d != "" {
				t.Errorf("Parse(Bytes(img)) mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	got, err := Parse(mustBytes(t, Image{Hostname: "node7"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Image{OS: "Basalt Sim Linux", Kernel: "3.13.0-sim", Hostname: "node7", Login: "node7 login: ", Prompt: "root@node7:~# ", Size: DefaultSize}
	if d := cmp.Diff(want, *got); d != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", d)
	}
}

func mustBytes(t *testing.T, img Image) []byte {
	t.Helper()
	b, err := Bytes(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A disk is larger than the image written to it; whatever follows the image
// does not matter.
func TestReadDiskLargerThanImage(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "sda")
	raw := mustBytes(t, testImage())
	data := append(append([]byte{}, raw...), bytes.Repeat([]byte{0xa5}, 3<<20)...)
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(disk)
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	if got.Hostname != "calxeda01" || got.Files["/root/hello.txt"] != "hi\n" {
		t.Errorf("Read = %+v, want the test image", got)
	}
}

func TestReadFailures(t *testing.T) {
	raw := mustBytes(t, testImage())
	flip := func(off int) []byte {
		b := append([]byte{}, raw...)
		b[off] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no bootable device: disk is blank"},
		{"zeros", make([]byte, 1<<20), "no bootable device: disk is blank"},
		{"foreign", append([]byte("\x7fELF"), make([]byte, 8192)...), "no bootable device: no sim disk signature at byte 0"},
		{"metadata byte", flip(HeaderSize + 10), fmt.Sprintf("checksum mismatch at bytes %d-%d (chunk 0 of 16)", HeaderSize, HeaderSize+64<<10-1)},
		{"padding byte", flip(500000), "checksum mismatch at bytes 462848-528383 (chunk 7 of 16)"},
		{"last byte", flip(len(raw) - 1), "(chunk 15 of 16)"},
		{"truncated", raw[:700000], "image truncated: disk ends at byte 700000, image is 1048576 bytes"},
		{"header only", raw[:HeaderSize], "image truncated: disk ends at byte 4096"},
		{"magic", flip(3), "no sim disk signature"},
		{"superblock", flip(len(Magic)), "corrupt header"},
		{"version", flip(len(Magic) + 2), "unsupported image version 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "sda")
			if err := os.WriteFile(disk, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(disk)
			if !errors.Is(err, ErrNoBootableDevice) {
				t.Fatalf("Read(%s) = %v, want ErrNoBootableDevice", tt.name, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Read(%s) = %q, want it to contain %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestReadMissingFileIsBlank(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, ErrNoBootableDevice) {
		t.Errorf("Read(missing) = %v, want ErrNoBootableDevice", err)
	}
}

// WriteFile compresses by name; the files decompress with independent
// readers (and with gzip/xz(1) when installed) to the raw image.
func TestWriteFileCompressed(t *testing.T) {
	dir := t.TempDir()
	img := testImage()
	img.Size = DefaultSize
	raw := mustBytes(t, img)
	for _, name := range []string{"disk.img", "disk.img.gz", "disk.img.xz"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := WriteFile(p, img); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if CompressionOf(name) != Raw && fi.Size() >= 1<<20 {
				t.Errorf("size of %s = %d, want < 1 MiB", name, fi.Size())
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var r io.Reader = f
			switch CompressionOf(name) {
			case Gzip:
				if r, err = gzip.NewReader(f); err != nil {
					t.Fatal(err)
				}
			case XZ:
				if r, err = xz.NewReader(f); err != nil {
					t.Fatal(err)
				}
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("decompressed %s differs from Bytes(img) (%d vs %d bytes)", name, len(got), len(raw))
			}
			tool := map[Compression]string{Gzip: "gzip", XZ: "xz"}[CompressionOf(name)]
			if tool == "" {
				return
			}
			if _, err := exec.LookPath(tool); err != nil {
				t.Logf("%s not installed; skipping the check with %s -dc", tool, tool)
				return
			}
			out, err := exec.Command(tool, "-dc", p).Output()
			if err != nil {
				t.Fatalf("%s -dc: %v", tool, err)
			}
			if !bytes.Equal(out, raw) {
				t.Errorf("%s -dc %s differs from Bytes(img)", tool, name)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	small := testImage()
	small.Size = HeaderSize + 8192
	raw, err := Bytes(small)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:HeaderSize+100])
	f.Add([]byte(Magic + `{"version":1,"size":5000,"meta_len":2,"chunk":65536,"sums":["00"]}` + "\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrNoBootableDevice) {
				t.Fatalf("Parse error %v does not wrap ErrNoBootableDevice", err)
			}
			return
		}
		if img.Size <= HeaderSize || img.Size > int64(len(data)) {
			t.Fatalf("Parse accepted an image of size %d from %d bytes", img.Size, len(data))
		}
	})
}

func BenchmarkRead(b *testing.B) {
	disk := filepath.Join(b.TempDir(), "sda")
	img := testImage()
	img.Size = DefaultSize
	if err := WriteFile(disk, img); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(DefaultSize)
	for b.Loop() {
		if _, err := Read(disk); err != nil {
			b.Fatal(err)
		}
	}
}
