// Package simdisk is the format of a bootable disk of the built-in sim device.
//
// deploy_image writes an image to the sim target's disk with
// `wget ... | gunzip | dd of=/dev/sda`; when the sim node later boots from
// disk it calls [Read] on the disk file and boots what it finds, so a good
// image reaches a login prompt and a corrupt, truncated or blank disk fails
// like real hardware does ("no bootable device").
//
// Layout of an image of Size bytes (all integers decimal, text in UTF-8):
//
//	offset 0     "BASALTSIMDISK1\n" followed by the superblock, one line of
//	             JSON {"version":1,"size":N,"meta_len":L,"chunk":C,"sums":[...]},
//	             then zero bytes up to HeaderSize
//	HeaderSize   the metadata: L bytes of JSON encoding [Image]
//	...          zero bytes up to Size
//
// sums[i] is the hex SHA-256 of bytes [HeaderSize+i*C, min(HeaderSize+(i+1)*C, N))
// of the image, so every byte after the header is covered and a mismatch can
// be reported with its byte range. Images are mostly zeros and compress to a
// few KiB with gzip or xz.
package simdisk

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ulikunitz/xz"
)

// Magic starts every sim disk image.
const Magic = "BASALTSIMDISK1\n"

// HeaderSize is the size of the header block that holds Magic and the
// superblock.
const HeaderSize = 4096

// DefaultSize is the raw size of an image whose Size is zero: 4 MiB.
const DefaultSize = 4 << 20

// MaxMetaSize bounds the metadata JSON so a hostile disk cannot make Read
// allocate much.
const MaxMetaSize = 1 << 20

// maxChunks bounds the number of checksums so the superblock fits the header.
const maxChunks = 32

// ErrNoBootableDevice is wrapped by every error of Read and Parse that means
// the disk cannot boot: blank, foreign, truncated or corrupt.
var ErrNoBootableDevice = errors.New("no bootable device")

// Image is what a sim disk boots: the metadata of the installed system.
// Zero fields get the defaults documented beside them when the image is
// written.
type Image struct {
	// OS is the pretty name printed at boot ("Ubuntu 12.04 LTS"); default
	// "Basalt Sim Linux".
	OS string `json:"os"`
	// Kernel is the kernel release (`uname -r`); default "3.13.0-sim".
	Kernel string `json:"kernel"`
	// Hostname of the booted system; default "sim".
	Hostname string `json:"hostname"`
	// Login is the login prompt the console shows once booted; default
	// "<hostname> login: ".
	Login string `json:"login"`
	// Prompt is the shell prompt after login; default "root@<hostname>:~# ".
	Prompt string `json:"prompt"`
	// Cmdline is the kernel command line of the installed system.
	Cmdline string `json:"cmdline,omitempty"`
	// Files are installed into the booted system's filesystem: absolute
	// slash path → content.
	Files map[string]string `json:"files,omitempty"`
	// Size is the raw image size in bytes (DefaultSize when zero). It is
	// stored in the superblock, not in the metadata.
	Size int64 `json:"-"`
}

// withDefaults returns img with its zero fields filled.
func (img Image) withDefaults() Image {
	if img.OS == "" {
		img.OS = "Basalt Sim Linux"
	}
	if img.Kernel == "" {
		img.Kernel = "3.13.0-sim"
	}
	if img.Hostname == "" {
		img.Hostname = "sim"
	}
	if img.Login == "" {
		img.Login = img.Hostname + " login: "
	}
	if img.Prompt == "" {
		img.Prompt = "root@" + img.Hostname + ":~# "
	}
	if img.Size == 0 {
		img.Size = DefaultSize
	}
	return img
}

type superblock struct {
	Version int      `json:"version"`
	Size    int64    `json:"size"`
	MetaLen int      `json:"meta_len"`
	Chunk   int64    `json:"chunk"`
	Sums    []string `json:"sums"`
}

// layout returns the chunk size for an image of size bytes: at least 64 KiB,
// a multiple of 4 KiB, and few enough chunks to fit the header.
func layout(size int64) int64 {
	body := size - HeaderSize
	chunk := int64(64 << 10)
	for (body+chunk-1)/chunk > maxChunks {
		chunk *= 2
	}
	return chunk
}

// body yields the bytes after the header: meta, then zeros.
type body struct {
	meta []byte
	size int64 // bytes after the header
}

// fill writes body bytes [off, off+len(p)) into p.
func (b body) fill(p []byte, off int64) {
	clear(p)
	if off < int64(len(b.meta)) {
		copy(p, b.meta[off:])
	}
}

// Write writes the raw image of img (img.Size bytes) to w.
func Write(w io.Writer, img Image) error {
	img = img.withDefaults()
	meta, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("simdisk: encode metadata: %w", err)
	}
	if len(meta) > MaxMetaSize {
		return fmt.Errorf("simdisk: metadata is %d bytes, more than %d", len(meta), MaxMetaSize)
	}
	if img.Size < HeaderSize+int64(len(meta)) {
		return fmt.Errorf("simdisk: size %d is too small for a %d-byte header and %d bytes of metadata", img.Size, HeaderSize, len(meta))
	}
	b := body{meta: meta, size: img.Size - HeaderSize}
	chunk := layout(img.Size)
	sb := superblock{Version: 1, Size: img.Size, MetaLen: len(meta), Chunk: chunk}
	buf := make([]byte, chunk)
	for off := int64(0); off < b.size; off += chunk {
		p := buf[:min(chunk, b.size-off)]
		b.fill(p, off)
		sum := sha256.Sum256(p)
		sb.Sums = append(sb.Sums, hex.EncodeToString(sum[:]))
	}
	hdr, err := json.Marshal(sb)
	if err != nil {
		return fmt.Errorf("simdisk: encode superblock: %w", err)
	}
	head := make([]byte, HeaderSize)
	n := copy(head, Magic)
	n += copy(head[n:], hdr)
	if n >= HeaderSize {
		return fmt.Errorf("simdisk: superblock does not fit the %d-byte header", HeaderSize)
	}
	head[n] = '\n'
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("simdisk: write header: %w", err)
	}
	for off := int64(0); off < b.size; off += chunk {
		p := buf[:min(chunk, b.size-off)]
		b.fill(p, off)
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("simdisk: write image: %w", err)
		}
	}
	return nil
}

// Bytes returns the raw image of img.
func Bytes(img Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := Write(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Compression names how an image file is compressed.
type Compression string

// Compressions of image files, named by their file name suffix.
const (
	Raw  Compression = ""
	Gzip Compression = "gz"
	XZ   Compression = "xz"
)

// CompressionOf returns the compression implied by a file name: ".gz" or
// ".xz" suffixes, else Raw.
func CompressionOf(name string) Compression {
	switch {
	case strings.HasSuffix(name, ".gz"):
		return Gzip
	case strings.HasSuffix(name, ".xz"):
		return XZ
	}
	return Raw
}

// WriteCompressed writes img to w compressed with c.
func WriteCompressed(w io.Writer, img Image, c Compression) error {
	return Compress(w, c, func(w io.Writer) error { return Write(w, img) })
}

// Compress calls write with a writer that compresses to w with c (gzip at
// its best compression, with no name or time in its header, so the same
// image gives the same bytes).
func Compress(w io.Writer, c Compression, write func(io.Writer) error) error {
	switch c {
	case Raw:
		return write(w)
	case Gzip:
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return fmt.Errorf("simdisk: gzip: %w", err)
		}
		if err := write(zw); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("simdisk: gzip: %w", err)
		}
		return nil
	case XZ:
		zw, err := xz.NewWriter(w)
		if err != nil {
			return fmt.Errorf("simdisk: xz: %w", err)
		}
		if err := write(zw); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("simdisk: xz: %w", err)
		}
		return nil
	}
	return fmt.Errorf("simdisk: unknown compression %q", string(c))
}

// WriteFile writes img to the file at path, compressed as its name says
// (".img", ".img.gz", ".img.xz").
func WriteFile(path string, img Image) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("simdisk: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("simdisk: %w", cerr)
		}
	}()
	return WriteCompressed(f, img, CompressionOf(path))
}

// Read reads and verifies the sim disk image at the start of the disk file
// at path. Every failure to find a bootable image wraps ErrNoBootableDevice;
// errors opening the file are returned as they are. A missing file reads as
// a blank disk.
func Read(path string) (*Image, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: disk is blank", ErrNoBootableDevice)
	}
	if err != nil {
		return nil, fmt.Errorf("simdisk: %w", err)
	}
	defer f.Close()
	return Decode(f)
}

// Decode reads and verifies an image from the start of r, reading no more
// than the image's size.
func Decode(r io.Reader) (*Image, error) {
	head := make([]byte, HeaderSize)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("simdisk: read header: %w", err)
	}
	sb, err := parseHeader(head[:n])
	if err != nil {
		return nil, err
	}
	// Hash chunk by chunk without buffering a chunk: the header is not
	// trusted yet, and a chunk may claim to be large.
	meta := &prefixWriter{max: sb.MetaLen}
	tee := io.TeeReader(r, meta)
	bodySize := sb.Size - HeaderSize
	for i, want := range sb.Sums {
		off := int64(i) * sb.Chunk
		n := min(sb.Chunk, bodySize-off)
		h := sha256.New()
		m, err := io.CopyN(h, tee, n)
		if err == io.EOF {
			return nil, fmt.Errorf("%w: image truncated: disk ends at byte %d, image is %d bytes", ErrNoBootableDevice, HeaderSize+off+m, sb.Size)
		}
		if err != nil {
			return nil, fmt.Errorf("simdisk: read image: %w", err)
		}
		if hex.EncodeToString(h.Sum(nil)) != want {
			start := HeaderSize + off
			return nil, fmt.Errorf("%w: checksum mismatch at bytes %d-%d (chunk %d of %d)", ErrNoBootableDevice, start, start+n-1, i, len(sb.Sums))
		}
	}
	var img Image
	if err := json.Unmarshal(meta.buf, &img); err != nil {
		return nil, fmt.Errorf("%w: corrupt metadata: %v", ErrNoBootableDevice, err)
	}
	img.Size = sb.Size
	return &img, nil
}

// Parse decodes and verifies a raw image held in memory.
func Parse(data []byte) (*Image, error) { return Decode(bytes.NewReader(data)) }

// parseHeader checks the magic and the superblock.
func parseHeader(head []byte) (*superblock, error) {
	if !bytes.HasPrefix(head, []byte(Magic)) {
		if len(bytes.Trim(head, "\x00")) == 0 {
			return nil, fmt.Errorf("%w: disk is blank", ErrNoBootableDevice)
		}
		return nil, fmt.Errorf("%w: no sim disk signature at byte 0", ErrNoBootableDevice)
	}
	line := head[len(Magic):]
	end := bytes.IndexByte(line, '\n')
	if end < 0 {
		return nil, fmt.Errorf("%w: corrupt header: superblock is not terminated", ErrNoBootableDevice)
	}
	var sb superblock
	if err := json.Unmarshal(line[:end], &sb); err != nil {
		return nil, fmt.Errorf("%w: corrupt header: %v", ErrNoBootableDevice, err)
	}
	switch {
	case sb.Version != 1:
		return nil, fmt.Errorf("%w: unsupported image version %d", ErrNoBootableDevice, sb.Version)
	case sb.Size <= HeaderSize || sb.Chunk <= 0 || sb.Chunk > 1<<30:
		return nil, fmt.Errorf("%w: corrupt header: size %d, chunk %d", ErrNoBootableDevice, sb.Size, sb.Chunk)
	case sb.MetaLen <= 0 || sb.MetaLen > MaxMetaSize || int64(sb.MetaLen) > sb.Size-HeaderSize:
		return nil, fmt.Errorf("%w: corrupt header: metadata length %d", ErrNoBootableDevice, sb.MetaLen)
	case int64(len(sb.Sums)) != (sb.Size-HeaderSize+sb.Chunk-1)/sb.Chunk:
		return nil, fmt.Errorf("%w: corrupt header: %d checksums for %d bytes in %d-byte chunks", ErrNoBootableDevice, len(sb.Sums), sb.Size-HeaderSize, sb.Chunk)
	}
	return &sb, nil
}

// prefixWriter keeps the first max bytes written to it.
type prefixWriter struct {
	buf []byte
	max int
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	if need := w.max - len(w.buf); need > 0 {
		w.buf = append(w.buf, p[:min(need, len(p))]...)
	}
	return len(p), nil
}
