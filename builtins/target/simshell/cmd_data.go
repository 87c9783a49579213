package simshell

import (
	"bufio"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ulikunitz/xz"
)

// ddOptions are dd's operands.
type ddOptions struct {
	in, out                 string
	ibs, obs                int64
	count, skip, seek       int64 // -1 when unset (count)
	notrunc, fsync, padSync bool
	fullblock               bool
	skipBytes, countBytes   bool
	seekBytes               bool
	status                  string
}

func parseDd(c *call) (*ddOptions, error) {
	o := &ddOptions{ibs: 512, obs: 512, count: -1}
	for _, a := range c.args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("invalid argument '%s'", a)
		}
		var err error
		switch k {
		case "if":
			o.in = v
		case "of":
			o.out = v
		case "bs":
			o.ibs, err = parseSize(v)
			o.obs = o.ibs
		case "ibs":
			o.ibs, err = parseSize(v)
		case "obs":
			o.obs, err = parseSize(v)
		case "count":
			o.count, err = parseSize(v)
		case "skip":
			o.skip, err = parseSize(v)
		case "seek":
			o.seek, err = parseSize(v)
		case "conv":
			for _, f := range strings.Split(v, ",") {
				switch f {
				case "notrunc":
					o.notrunc = true
				case "fsync", "fdatasync":
					o.fsync = true
				case "sync":
					o.padSync = true
				case "noerror", "excl", "nocreat", "":
				default:
					return nil, fmt.Errorf("invalid conversion '%s'", f)
				}
			}
		case "iflag", "oflag":
			for _, f := range strings.Split(v, ",") {
				switch f {
				case "fullblock":
					o.fullblock = true
				case "skip_bytes":
					o.skipBytes = true
				case "count_bytes":
					o.countBytes = true
				case "seek_bytes":
					o.seekBytes = true
				case "direct", "dsync", "sync", "nocache", "":
				default:
					return nil, fmt.Errorf("invalid flag '%s'", f)
				}
			}
		case "status":
			o.status = v
		default:
			return nil, fmt.Errorf("invalid argument '%s'", a)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.ibs <= 0 || o.obs <= 0 || o.ibs > 1<<30 {
		return nil, errors.New("invalid block size")
	}
	return o, nil
}

// cmdDd copies like dd(1): one read of ibs bytes per input record (a short
// read from a pipe is a partial record), and prints the busybox summary on
// standard error.
func cmdDd(c *call) error {
	o, err := parseDd(c)
	if err != nil {
		return c.fail("%v", err)
	}
	var in io.Reader = c.stdin
	var seeker io.Seeker
	if o.in != "" {
		f, err := c.open(o.in)
		if err != nil {
			return c.fail("can't open '%s': %s", o.in, errnoText(err))
		}
		defer f.Close()
		in, seeker = ctxReader{c.ctx, f}, f
	}
	var out io.Writer = c.stdout
	var outFile file
	if o.out != "" {
		f, err := c.create(o.out, 0)
		if err != nil {
			return c.fail("can't open '%s': %s", o.out, errnoText(err))
		}
		defer f.Close()
		out, outFile = f, f
	}
	skip := o.skip
	if !o.skipBytes {
		skip *= o.ibs
	}
	if skip > 0 {
		if seeker != nil && fileSize(seeker) >= 0 || isDisk(c, o.in) {
			if _, err := seeker.Seek(skip, io.SeekStart); err != nil {
				return c.fail("can't seek in '%s': %s", o.in, errnoText(err))
			}
		} else if _, err := io.CopyN(io.Discard, in, skip); err != nil && err != io.EOF {
			return c.fail("%v", err)
		}
	}
	seek := o.seek
	if !o.seekBytes {
		seek *= o.obs
	}
	if outFile != nil {
		if seek > 0 {
			if _, err := outFile.Seek(seek, io.SeekStart); err != nil {
				return c.fail("can't seek in '%s': %s", o.out, errnoText(err))
			}
		}
		if t, ok := outFile.(interface{ Truncate(int64) error }); ok && !o.notrunc && !isDisk(c, o.out) && fileSize(outFile) >= 0 {
			if err := t.Truncate(seek); err != nil {
				return c.fail("can't truncate '%s': %s", o.out, errnoText(err))
			}
		}
	}

	var fullIn, partIn, fullOut, partOut, total int64
	start := time.Now()
	buf := make([]byte, o.ibs)
	var copyErr error
	left := o.count // blocks, or bytes with iflag=count_bytes
	for o.count < 0 || left > 0 {
		want := int64(len(buf))
		if o.countBytes && left >= 0 {
			want = min(want, left)
		}
		var n int
		var err error
		if o.fullblock {
			n, err = io.ReadFull(in, buf[:want])
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
		} else {
			n, err = in.Read(buf[:want])
		}
		if n > 0 {
			if int64(n) == o.ibs {
				fullIn++
			} else {
				partIn++
			}
			if o.countBytes {
				left -= int64(n)
			} else if left > 0 {
				left--
			}
			data := buf[:n]
			if o.padSync && int64(n) < o.ibs {
				clear(buf[n:])
				data = buf
			}
			w, werr := out.Write(data)
			total += int64(w)
			if int64(w) == o.obs || int64(w) > o.obs && int64(w)%o.obs == 0 {
				fullOut += int64(w) / o.obs
			} else if w > 0 {
				fullOut += int64(w) / o.obs
				partOut++
			}
			if werr != nil {
				copyErr = fmt.Errorf("error writing '%s': %s", orStdout(o.out), errnoText(werr))
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			copyErr = fmt.Errorf("error reading '%s': %s", orStdin(o.in), errnoText(err))
			break
		}
	}
	if copyErr == nil && o.fsync && outFile != nil {
		if s, ok := outFile.(interface{ Sync() error }); ok {
			if err := s.Sync(); err != nil {
				copyErr = fmt.Errorf("fsync '%s': %s", o.out, errnoText(err))
			}
		}
	}
	if c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	// busybox reports a read or write error as it happens (bb_perror_msg)
	// and then the records (out_status), checked against busybox 1.35 on
	// a Linux loop device that fills (TestPartitionLoopDevice).
	if copyErr != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", c.name, copyErr)
	}
	if o.status != "none" {
		fmt.Fprintf(c.stderr, "%d+%d records in\n%d+%d records out\n", fullIn, partIn, fullOut, partOut)
		if o.status != "noxfer" {
			secs := time.Since(start).Seconds()
			rate := float64(total)
			if secs > 0 {
				rate /= secs
			}
			fmt.Fprintf(c.stderr, "%d bytes (%sB) copied, %f seconds, %sB/s\n", total, humanDecimal(float64(total)), secs, humanDecimal(rate))
		}
	}
	if copyErr != nil {
		return exitCode(1)
	}
	return nil
}

func isDisk(c *call, p string) bool {
	if p == "" {
		return false
	}
	_, ok := c.sh.fs.disks[c.abs(p)]
	return ok
}

func orStdout(p string) string {
	if p == "" {
		return "standard output"
	}
	return p
}

func orStdin(p string) string {
	if p == "" {
		return "standard input"
	}
	return p
}

// humanDecimal formats like busybox's make_human_readable_str with 1024
// units: "4.0M".
func humanDecimal(v float64) string {
	units := "BKMGTP"
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f%c", v, units[i])
}

// codec is a compression format of gzip(1) or xz(1).
type codec struct {
	magic     string
	suffix    string
	altSuffix [2]string // e.g. ".tgz" → ".tar"
	reader    func(io.Reader) (io.Reader, error)
	writer    func(io.Writer, int) (io.WriteCloser, error)
}

var gzipCodec = codec{
	magic:     "\x1f\x8b",
	suffix:    ".gz",
	altSuffix: [2]string{".tgz", ".tar"},
	reader: func(r io.Reader) (io.Reader, error) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return zr, nil
	},
	writer: func(w io.Writer, level int) (io.WriteCloser, error) { return gzip.NewWriterLevel(w, level) },
}

var xzCodec = codec{
	magic:     "\xfd7zXZ\x00",
	suffix:    ".xz",
	altSuffix: [2]string{".txz", ".tar"},
	reader: func(r io.Reader) (io.Reader, error) {
		zr, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return zr, nil
	},
	writer: func(w io.Writer, _ int) (io.WriteCloser, error) { return xz.NewWriter(w) },
}

// codecError turns a decoder error into busybox's words.
func codecError(err error) error {
	switch {
	case errors.Is(err, gzip.ErrHeader), err != nil && strings.Contains(err.Error(), "magic"),
		err != nil && strings.Contains(err.Error(), "header"):
		return errors.New("invalid magic")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("unexpected end of file")
	case errors.Is(err, gzip.ErrChecksum):
		return errors.New("crc error")
	case err != nil:
		return fmt.Errorf("corrupted data: %v", err)
	}
	return nil
}

func cmdGzip(c *call) error { return runCodec(c, gzipCodec, c.name == "gunzip", c.name == "zcat") }

func cmdXz(c *call) error { return runCodec(c, xzCodec, c.name == "unxz", c.name == "xzcat") }

// runCodec is gzip, gunzip, zcat, xz, unxz and xzcat.
func runCodec(c *call, cd codec, decompress, toStdout bool) error {
	o, names, err := c.getopt("cdfkltqvnNT:0123456789e")
	if err != nil {
		return err
	}
	decompress = decompress || toStdout || o.has('d') || o.has('t')
	toStdout = toStdout || o.has('c') || o.has('t')
	level := gzip.DefaultCompression
	for l := byte('1'); l <= '9'; l++ {
		if o.has(l) {
			level = int(l - '0')
		}
	}
	process := func(r io.Reader, w io.Writer) error {
		if decompress {
			br := bufio.NewReader(r)
			if m, _ := br.Peek(len(cd.magic)); string(m) != cd.magic {
				return errors.New("invalid magic")
			}
			zr, err := cd.reader(br)
			if err != nil {
				return codecError(err)
			}
			if o.has('t') {
				w = io.Discard
			}
			if _, err := io.Copy(w, zr); err != nil {
				if errors.Is(err, io.ErrClosedPipe) || c.ctx.Err() != nil || isWriteErr(err, w) {
					return err
				}
				return codecError(err)
			}
			return nil
		}
		zw, err := cd.writer(w, level)
		if err != nil {
			return err
		}
		if _, err := io.Copy(zw, r); err != nil {
			return err
		}
		return zw.Close()
	}
	if len(names) == 0 || len(names) == 1 && names[0] == "-" {
		if !decompress && !o.has('f') && isConsole(c.stdout) {
			return c.fail("compressed data not written to a terminal. Use -f to force compression.")
		}
		if err := process(c.stdin, c.stdout); err != nil {
			if errors.Is(err, syscall.EPIPE) || c.ctx.Err() != nil {
				return err
			}
			return c.fail("%v", err)
		}
		return nil
	}
	status := 0
	for _, n := range names {
		if err := c.codecFile(cd, n, decompress, toStdout, o.has('k'), process); err != nil {
			if errors.Is(err, syscall.EPIPE) || c.ctx.Err() != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
			status = 1
		}
	}
	return exitOr(status)
}

// codecFile compresses or decompresses one named file.
func (c *call) codecFile(cd codec, name string, decompress, toStdout, keep bool, process func(io.Reader, io.Writer) error) error {
	var dst string
	if !toStdout {
		switch {
		case decompress && strings.HasSuffix(name, cd.suffix):
			dst = strings.TrimSuffix(name, cd.suffix)
		case decompress && strings.HasSuffix(name, cd.altSuffix[0]):
			dst = strings.TrimSuffix(name, cd.altSuffix[0]) + cd.altSuffix[1]
		case decompress:
			return fmt.Errorf("%s: unknown suffix - ignored", name)
		default:
			dst = name + cd.suffix
		}
	}
	in, err := c.input(name)
	if err != nil {
		return fmt.Errorf("can't open '%s': %s", name, errnoText(err))
	}
	defer in.Close()
	if toStdout {
		return process(in, c.stdout)
	}
	out, err := c.create(dst, os.O_TRUNC|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("can't open '%s': %s", dst, errnoText(err))
	}
	if err := process(in, out); err != nil {
		out.Close()
		c.sh.fs.root.Remove(rel(c.abs(dst)))
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if !keep {
		c.sh.fs.root.Remove(rel(c.abs(name)))
	}
	return nil
}

// isWriteErr reports whether err came from writing to w (a broken pipe),
// not from decoding.
func isWriteErr(err error, w io.Writer) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Op == "write"
}

func isConsole(w io.Writer) bool {
	if cw, ok := w.(ctxWriter); ok {
		w = cw.w
	}
	_, ok := w.(*ttyWriter)
	return ok
}

// cmdSum is sha256sum and md5sum, with -c to check a list.
func cmdSum(c *call) error {
	newHash := sha256.New
	if c.name == "md5sum" {
		newHash = md5.New
	}
	o, names, err := c.getopt("bctswq")
	if err != nil {
		return err
	}
	sum := func(r io.Reader) (string, error) {
		h := newHash()
		if _, err := io.Copy(h, r); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if !o.has('c') {
		return c.forEachInput(names, func(name string, r io.Reader) error {
			s, err := sum(r)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "%s  %s\n", s, name)
			return err
		})
	}
	quiet := o.has('s')
	bad := 0
	err = c.forEachInput(names, func(_ string, r io.Reader) error {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			want, name, ok := strings.Cut(sc.Text(), " ")
			name = strings.TrimLeft(name, " *")
			if !ok || len(want) != newHash().Size()*2 {
				continue
			}
			f, err := c.input(name)
			var got string
			if err == nil {
				got, err = sum(f)
				f.Close()
			}
			if err != nil || !strings.EqualFold(got, want) {
				bad++
				if !quiet {
					fmt.Fprintf(c.stdout, "%s: FAILED\n", name)
				}
				continue
			}
			if !quiet && !o.has('q') {
				fmt.Fprintf(c.stdout, "%s: OK\n", name)
			}
		}
		return sc.Err()
	})
	if err != nil {
		return err
	}
	if bad > 0 {
		if !quiet {
			fmt.Fprintf(c.stderr, "%s: WARNING: %d of computed checksums did NOT match\n", c.name, bad)
		}
		return exitCode(1)
	}
	return nil
}
