package simshell

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func cmdCat(c *call) error {
	_, names, err := c.getopt("uvnet")
	if err != nil {
		return err
	}
	return c.forEachInput(names, func(_ string, r io.Reader) error {
		rr := &readErr{r: r}
		_, err := io.Copy(c.stdout, rr)
		if err != nil && rr.err != nil && c.ctx.Err() == nil {
			// busybox 1.35 cat (bb_copyfd_eof): "cat: read error:
			// Invalid argument", then the next file.
			fmt.Fprintf(c.stderr, "%s: read error: %s\n", c.name, errnoText(rr.err))
			return errReported
		}
		return err
	})
}

// readErr remembers the error of its reader, to tell it from a write error.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func cmdEcho(c *call) error {
	args := c.args
	newline, escapes := true, false
	for len(args) > 0 && len(args[0]) > 1 && strings.Trim(args[0], "neE") == "-" {
		for _, f := range args[0][1:] {
			switch f {
			case 'n':
				newline = false
			case 'e':
				escapes = true
			case 'E':
				escapes = false
			}
		}
		args = args[1:]
	}
	s := strings.Join(args, " ")
	if escapes {
		var stop bool
		s, stop = expandEscapes(s)
		if stop {
			newline = false
		}
	}
	if newline {
		s += "\n"
	}
	_, err := io.WriteString(c.stdout, s)
	return err
}

// expandEscapes expands echo -e escapes; stop is true after \c.
func expandEscapes(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '\\':
			b.WriteByte('\\')
		case 'c':
			return b.String(), true
		case '0':
			j := i + 1
			for j < len(s) && j < i+4 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint("0"+s[i+1:j], 8, 8)
			b.WriteByte(byte(v))
			i = j - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String(), false
}

func cmdLs(c *call) error {
	o, names, err := c.getopt("la1hdAFR")
	if err != nil {
		return err
	}
	if len(names) == 0 {
		names = []string{"."}
	}
	long, all := o.has('l'), o.has('a') || o.has('A')
	status := 0
	var files, dirs []string
	for _, n := range names {
		fi, err := c.sh.fs.stat(c.abs(n), true)
		if err != nil {
			if _, lerr := c.sh.fs.stat(c.abs(n), false); lerr == nil {
				files = append(files, n) // a dangling symlink
				continue
			}
			fmt.Fprintf(c.stderr, "ls: %s\n", describe(n, err))
			status = 1
			continue
		}
		if fi.IsDir() && !o.has('d') {
			dirs = append(dirs, n)
		} else {
			files = append(files, n)
		}
	}
	w := bufio.NewWriter(c.stdout)
	defer w.Flush()
	for _, n := range files {
		fi, err := c.sh.fs.stat(c.abs(n), false)
		if err != nil {
			continue
		}
		c.lsEntry(w, n, fi, long, o.has('h'))
	}
	for i, d := range dirs {
		if len(names) > 1 {
			if i > 0 || len(files) > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s:\n", d)
		}
		ents, err := c.sh.fs.readDir(c.abs(d))
		if err != nil {
			fmt.Fprintf(c.stderr, "ls: %s\n", describe(d, err))
			status = 1
			continue
		}
		if long {
			fmt.Fprintf(w, "total %d\n", len(ents))
		}
		for _, e := range ents {
			if !all && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			fi, err := c.sh.fs.stat(path.Join(c.abs(d), e.Name()), false)
			if err != nil {
				continue
			}
			c.lsEntry(w, e.Name(), fi, long, o.has('h'))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return exitOr(status)
}

func (c *call) lsEntry(w io.Writer, name string, fi fs.FileInfo, long, human bool) {
	if !long {
		fmt.Fprintln(w, name)
		return
	}
	size := strconv.FormatInt(fi.Size(), 10)
	if human {
		size = humanSize(fi.Size())
	}
	mode := fi.Mode()
	ms := []byte(mode.Perm().String())
	switch {
	case mode&fs.ModeCharDevice != 0:
		ms[0] = 'c'
	case mode&fs.ModeDevice != 0:
		ms[0] = 'b'
	case mode&fs.ModeSymlink != 0:
		ms[0] = 'l'
	case mode.IsDir():
		ms[0] = 'd'
	}
	mt := fi.ModTime()
	if mt.IsZero() {
		mt = c.sh.start
	}
	suffix := ""
	if mode&fs.ModeSymlink != 0 {
		if target, err := c.sh.fs.root.Readlink(rel(c.abs(name))); err == nil {
			suffix = " -> " + target
		}
	}
	fmt.Fprintf(w, "%s %4d root     root     %10s %s %s%s\n", ms, 1, size, mt.Format("Jan _2 15:04"), name, suffix)
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%c", v, "BKMGT"[i])
}

func cmdMkdir(c *call) error {
	o, names, err := c.getopt("pm:")
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return c.fail("missing operand")
	}
	status := 0
	for _, n := range names {
		r := rel(c.abs(n))
		if o.has('p') {
			err = c.sh.fs.root.MkdirAll(r, 0o755)
		} else {
			err = c.sh.fs.root.Mkdir(r, 0o755)
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "mkdir: can't create directory '%s': %s\n", n, errnoText(pathError("mkdir", n, err)))
			status = 1
		}
	}
	return exitOr(status)
}

func cmdRm(c *call) error {
	o, names, err := c.getopt("rRfi")
	if err != nil {
		return err
	}
	status := 0
	for _, n := range names {
		p := c.abs(n)
		if p == "/" {
			fmt.Fprintf(c.stderr, "rm: can't remove '/'\n")
			status = 1
			continue
		}
		fi, err := c.sh.fs.stat(p, false)
		if err != nil {
			if !o.has('f') {
				fmt.Fprintf(c.stderr, "rm: can't remove '%s': %s\n", n, errnoText(err))
				status = 1
			}
			continue
		}
		switch {
		case fi.IsDir() && !o.has('r') && !o.has('R'):
			fmt.Fprintf(c.stderr, "rm: '%s' is a directory\n", n)
			status = 1
		case fi.IsDir():
			err = c.sh.fs.root.RemoveAll(rel(p))
		default:
			err = c.sh.fs.root.Remove(rel(p))
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "rm: can't remove '%s': %s\n", n, errnoText(pathError("remove", n, err)))
			status = 1
		}
	}
	return exitOr(status)
}

func cmdRmdir(c *call) error {
	status := 0
	for _, n := range c.args {
		if err := c.sh.fs.root.Remove(rel(c.abs(n))); err != nil {
			fmt.Fprintf(c.stderr, "rmdir: '%s': %s\n", n, errnoText(pathError("rmdir", n, err)))
			status = 1
		}
	}
	return exitOr(status)
}

// target resolves the destination of cp/mv: inside dst when dst is a
// directory.
func (c *call) target(src, dst string) string {
	if fi, err := c.stat(dst); err == nil && fi.IsDir() {
		return path.Join(c.abs(dst), path.Base(c.abs(src)))
	}
	return c.abs(dst)
}

func cmdCp(c *call) error {
	_, names, err := c.getopt("rRfapdv")
	if err != nil {
		return err
	}
	if len(names) < 2 {
		return c.fail("missing file operand")
	}
	dst := names[len(names)-1]
	status := 0
	for _, src := range names[:len(names)-1] {
		if err := c.copyFile(src, c.target(src, dst)); err != nil {
			fmt.Fprintf(c.stderr, "cp: %v\n", err)
			status = 1
		}
	}
	return exitOr(status)
}

func (c *call) copyFile(src, dst string) error {
	if fi, err := c.stat(src); err == nil && fi.IsDir() {
		return fmt.Errorf("omitting directory '%s'", src)
	}
	in, err := c.open(src)
	if err != nil {
		return fmt.Errorf("can't open '%s': %s", src, errnoText(err))
	}
	defer in.Close()
	out, err := c.sh.fs.open(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("can't create '%s': %s", dst, errnoText(err))
	}
	if _, err := io.Copy(out, ctxReader{c.ctx, in}); err != nil {
		out.Close()
		return fmt.Errorf("%s: %v", dst, err)
	}
	return out.Close()
}

func cmdMv(c *call) error {
	_, names, err := c.getopt("fin")
	if err != nil {
		return err
	}
	if len(names) < 2 {
		return c.fail("missing file operand")
	}
	dst := names[len(names)-1]
	status := 0
	for _, src := range names[:len(names)-1] {
		to := c.target(src, dst)
		if err := c.sh.fs.root.Rename(rel(c.abs(src)), rel(to)); err != nil {
			fmt.Fprintf(c.stderr, "mv: can't rename '%s': %s\n", src, errnoText(pathError("rename", src, err)))
			status = 1
		}
	}
	return exitOr(status)
}

func cmdTouch(c *call) error {
	_, names, err := c.getopt("c")
	if err != nil {
		return err
	}
	now := time.Now()
	status := 0
	for _, n := range names {
		p := c.abs(n)
		if _, err := c.sh.fs.stat(p, true); err == nil {
			if _, dev := c.sh.fs.disks[p]; !dev {
				c.sh.fs.root.Chtimes(rel(p), now, now)
			}
			continue
		}
		f, err := c.sh.fs.open(p, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintf(c.stderr, "touch: %s\n", describe(n, err))
			status = 1
			continue
		}
		f.Close()
	}
	return exitOr(status)
}

func cmdLn(c *call) error {
	o, names, err := c.getopt("sfn")
	if err != nil {
		return err
	}
	if !o.has('s') {
		return c.fail("only symbolic links (-s) are supported")
	}
	if len(names) != 2 {
		return c.fail("usage: ln -s TARGET LINK")
	}
	link := c.target(names[0], names[1])
	if o.has('f') {
		c.sh.fs.root.Remove(rel(link))
	}
	if err := c.sh.fs.root.Symlink(names[0], rel(link)); err != nil {
		return c.fail("%s", describe(names[1], pathError("symlink", names[1], err)))
	}
	return nil
}

// countArg rewrites the obsolete "-N" form of head and tail to "-n N".
func (c *call) countArg() {
	if len(c.args) > 0 && len(c.args[0]) > 1 && c.args[0][0] == '-' {
		if _, err := strconv.Atoi(c.args[0][1:]); err == nil {
			c.args = append([]string{"-n", c.args[0][1:]}, c.args[1:]...)
		}
	}
}

func cmdHead(c *call) error {
	c.countArg()
	o, names, err := c.getopt("n:c:qv")
	if err != nil {
		return err
	}
	lines, bytesMode := int64(10), false
	if o.has('c') {
		bytesMode = true
		if lines, err = parseSize(o.val('c', "")); err != nil {
			return c.fail("%v", err)
		}
	} else if o.has('n') {
		if lines, err = parseSize(o.val('n', "")); err != nil {
			return c.fail("%v", err)
		}
	}
	headers := len(names) > 1 && !o.has('q') || o.has('v')
	first := true
	return c.forEachInput(names, func(name string, r io.Reader) error {
		if headers {
			if !first {
				fmt.Fprintln(c.stdout)
			}
			fmt.Fprintf(c.stdout, "==> %s <==\n", name)
		}
		first = false
		if bytesMode {
			_, err := io.CopyN(c.stdout, r, lines)
			if err == io.EOF {
				err = nil
			}
			return err
		}
		br := bufio.NewReader(r)
		for i := int64(0); i < lines; i++ {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				if _, werr := c.stdout.Write(line); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func cmdTail(c *call) error {
	c.countArg()
	o, names, err := c.getopt("n:c:qvf")
	if err != nil {
		return err
	}
	spec, bytesMode := "10", false
	if o.has('c') {
		spec, bytesMode = o.val('c', ""), true
	} else if o.has('n') {
		spec = o.val('n', "")
	}
	fromStart := strings.HasPrefix(spec, "+")
	n, err := parseSize(strings.TrimPrefix(spec, "+"))
	if err != nil {
		return c.fail("%v", err)
	}
	return c.forEachInput(names, func(_ string, r io.Reader) error {
		switch {
		case bytesMode && fromStart:
			if _, err := io.CopyN(io.Discard, r, max(n-1, 0)); err != nil {
				return nil
			}
			_, err := io.Copy(c.stdout, r)
			return err
		case bytesMode:
			ring := newRing(n)
			if _, err := io.Copy(ring, r); err != nil {
				return err
			}
			_, err := c.stdout.Write(ring.bytes())
			return err
		}
		br := bufio.NewReader(r)
		var keep [][]byte
		for i := int64(1); ; i++ {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				switch {
				case fromStart && i >= n:
					if _, werr := c.stdout.Write(line); werr != nil {
						return werr
					}
				case !fromStart && n > 0:
					keep = append(keep, line)
					if int64(len(keep)) > n {
						keep = keep[1:]
					}
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		_, err := c.stdout.Write(bytes.Join(keep, nil))
		return err
	})
}

// ring keeps the last n bytes written to it.
type ring struct {
	buf  []byte
	n    int64
	full bool
	pos  int
}

func newRing(n int64) *ring { return &ring{buf: make([]byte, min(n, 64<<20)), n: min(n, 64<<20)} }

func (r *ring) Write(p []byte) (int, error) {
	if r.n == 0 {
		return len(p), nil
	}
	for _, b := range p {
		r.buf[r.pos] = b
		r.pos++
		if r.pos == len(r.buf) {
			r.pos, r.full = 0, true
		}
	}
	return len(p), nil
}

func (r *ring) bytes() []byte {
	if !r.full {
		return r.buf[:r.pos]
	}
	return append(append([]byte{}, r.buf[r.pos:]...), r.buf[:r.pos]...)
}

func cmdWc(c *call) error {
	o, names, err := c.getopt("lwcmL")
	if err != nil {
		return err
	}
	show := []bool{o.has('l'), o.has('w'), o.has('c') || o.has('m')}
	if !show[0] && !show[1] && !show[2] {
		show = []bool{true, true, true}
	}
	ncols := 0
	for _, s := range show {
		if s {
			ncols++
		}
	}
	var total [3]int64
	print := func(counts [3]int64, name string) {
		var cols []string
		for i, s := range show {
			if s {
				if ncols > 1 {
					cols = append(cols, fmt.Sprintf("%7d", counts[i]))
				} else {
					cols = append(cols, strconv.FormatInt(counts[i], 10))
				}
			}
		}
		line := strings.Join(cols, " ")
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(c.stdout, line)
	}
	err = c.forEachInput(names, func(name string, r io.Reader) error {
		var counts [3]int64
		inWord := false
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			for _, b := range buf[:n] {
				if b == '\n' {
					counts[0]++
				}
				space := b == ' ' || b == '\n' || b == '\t' || b == '\r' || b == '\v' || b == '\f'
				if !space && !inWord {
					counts[1]++
				}
				inWord = !space
			}
			counts[2] += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		for i := range total {
			total[i] += counts[i]
		}
		if name == "-" {
			name = ""
		}
		print(counts, name)
		return nil
	})
	if len(names) > 1 {
		print(total, "total")
	}
	return err
}

// bre converts a POSIX basic regular expression to Go syntax: in a BRE,
// \( \) \{ \} \| \+ \? are operators and the bare characters are literal.
func bre(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && i+1 < len(s):
			i++
			if strings.IndexByte("(){}|+?", s[i]) >= 0 {
				b.WriteByte(s[i])
			} else {
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		case strings.IndexByte("(){}|+?", ch) >= 0:
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch == '[':
			j := i + 1
			if j < len(s) && s[j] == '^' {
				j++
			}
			if j < len(s) && s[j] == ']' {
				j++
			}
			for j < len(s) && s[j] != ']' {
				if s[j] == '[' && j+1 < len(s) && (s[j+1] == ':' || s[j+1] == '.' || s[j+1] == '=') {
					if k := strings.Index(s[j+2:], string(s[j+1])+"]"); k >= 0 {
						j += k + 4
						continue
					}
				}
				j++
			}
			if j >= len(s) {
				b.WriteString(`\[`)
				continue
			}
			// Backslash is literal in a POSIX bracket expression.
			b.WriteString(strings.ReplaceAll(s[i:j+1], `\`, `\\`))
			i = j
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

func cmdGrep(c *call) error {
	o, rest, err := c.getopt("ivcqnEFlLwxhHse:o")
	if err != nil {
		return exitCode(2)
	}
	pats := o.vals['e']
	if len(pats) == 0 {
		if len(rest) == 0 {
			fmt.Fprintln(c.stderr, "Usage: grep [-HhnlLoqvsrRiwFE] [-m N] [-A|B|C N] { PATTERN | -e PATTERN... | -f FILE... } [FILE]...")
			return exitCode(2)
		}
		pats, rest = []string{rest[0]}, rest[1:]
	}
	var alts []string
	for _, p := range pats {
		for _, line := range strings.Split(p, "\n") {
			switch {
			case o.has('F'):
				line = regexp.QuoteMeta(line)
			case !o.has('E'):
				line = bre(line)
			}
			if o.has('w') {
				line = `\b(?:` + line + `)\b`
			}
			if o.has('x') {
				line = `^(?:` + line + `)$`
			}
			alts = append(alts, "(?:"+line+")")
		}
	}
	expr := strings.Join(alts, "|")
	if o.has('i') {
		expr = "(?i)" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		fmt.Fprintf(c.stderr, "grep: bad regex '%s': %v\n", strings.Join(pats, "\\n"), err)
		return exitCode(2)
	}
	prefix := (len(rest) > 1 || o.has('H')) && !o.has('h')
	matched := false
	err = c.forEachInput(rest, func(name string, r io.Reader) error {
		if name == "-" {
			name = "(standard input)"
		}
		br := bufio.NewReader(r)
		var count int64
		for lineno := 1; ; lineno++ {
			line, err := br.ReadString('\n')
			if len(line) > 0 {
				text := strings.TrimSuffix(line, "\n")
				if re.MatchString(text) != o.has('v') {
					count++
					matched = true
					if o.has('q') {
						return errQuit
					}
					if !o.has('c') && !o.has('l') && !o.has('L') {
						var b strings.Builder
						if prefix {
							b.WriteString(name + ":")
						}
						if o.has('n') {
							b.WriteString(strconv.Itoa(lineno) + ":")
						}
						if o.has('o') && !o.has('v') {
							for _, m := range re.FindAllString(text, -1) {
								fmt.Fprintf(c.stdout, "%s%s\n", b.String(), m)
							}
						} else if _, err := fmt.Fprintf(c.stdout, "%s%s\n", b.String(), text); err != nil {
							return err
						}
					}
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		switch {
		case o.has('c'):
			if prefix {
				fmt.Fprintf(c.stdout, "%s:", name)
			}
			fmt.Fprintln(c.stdout, count)
		case o.has('l') && count > 0, o.has('L') && count == 0:
			fmt.Fprintln(c.stdout, name)
		}
		return nil
	})
	if errors.Is(err, errQuit) {
		return nil
	}
	var code exitCode
	if errors.As(err, &code) {
		if o.has('s') || !matched {
			return exitCode(2)
		}
		return err
	}
	if err != nil {
		return err
	}
	if !matched {
		return exitCode(1)
	}
	return nil
}

// errQuit stops reading at the first match of grep -q.
var errQuit error = exitCode(0)

func cmdBasename(c *call) error {
	if len(c.args) == 0 {
		return c.fail("missing operand")
	}
	b := path.Base(c.args[0])
	if len(c.args) > 1 && b != c.args[1] {
		b = strings.TrimSuffix(b, c.args[1])
	}
	_, err := fmt.Fprintln(c.stdout, b)
	return err
}

func cmdDirname(c *call) error {
	if len(c.args) == 0 {
		return c.fail("missing operand")
	}
	_, err := fmt.Fprintln(c.stdout, path.Dir(c.args[0]))
	return err
}

func cmdBlockdev(c *call) error {
	if len(c.args) != 2 || c.args[0] != "--getsize64" && c.args[0] != "--getsz" {
		return c.fail("usage: blockdev --getsize64|--getsz DEVICE")
	}
	p := c.abs(c.args[1])
	if _, ok := c.sh.fs.disks[p]; !ok {
		if _, _, part := c.sh.fs.partition(p); !part {
			return c.fail("%s", describe(c.args[1], syscall.ENOTBLK))
		}
	}
	fi, err := c.sh.fs.stat(p, true)
	if err != nil {
		return c.failErr(c.args[1], err)
	}
	n := fi.Size()
	if c.args[0] == "--getsz" {
		n /= 512
	}
	_, err = fmt.Fprintln(c.stdout, n)
	return err
}

// cmdChmod sets permission bits, octal ("755") or symbolic for all users
// ("+x", "-w").
func cmdChmod(c *call) error {
	// A mode that starts with "-" (chmod -x F) is a mode, not options, as
	// in busybox's chmod: only -R is an option.
	var modes []string
	for i, a := range c.args {
		if len(a) > 1 && a[0] == '-' && a != "-R" && strings.Trim(a[1:], "rwxXst") == "" {
			modes = append(modes, a)
			c.args = append(append([]string{}, c.args[:i]...), c.args[i+1:]...)
			break
		}
	}
	_, rest, err := c.getopt("R")
	rest = append(modes, rest...)
	if err != nil {
		return err
	}
	if len(rest) < 2 {
		return c.fail("missing operand")
	}
	mode := rest[0]
	status := 0
	for _, n := range rest[1:] {
		p := c.abs(n)
		fi, err := c.sh.fs.stat(p, true)
		if err == nil {
			perm := fi.Mode().Perm()
			if v, perr := strconv.ParseUint(mode, 8, 32); perr == nil {
				perm = fs.FileMode(v) & fs.ModePerm
			} else if len(mode) >= 2 && (mode[0] == '+' || mode[0] == '-') {
				var bits fs.FileMode
				for _, ch := range mode[1:] {
					bits |= map[rune]fs.FileMode{'r': 0o444, 'w': 0o222, 'x': 0o111}[ch]
				}
				if mode[0] == '+' {
					perm |= bits
				} else {
					perm &^= bits
				}
			} else {
				return c.fail("invalid mode '%s'", mode)
			}
			err = c.sh.fs.root.Chmod(rel(p), perm)
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "chmod: %s\n", describe(n, pathError("chmod", n, err)))
			status = 1
		}
	}
	return exitOr(status)
}
