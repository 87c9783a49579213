package simshell

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// readLines reads the lines of the named inputs (standard input when none).
func (c *call) readLines(names []string) ([]string, error) {
	var lines []string
	err := c.forEachInput(names, func(_ string, r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		return sc.Err()
	})
	return lines, err
}

func (c *call) writeLines(lines []string) error {
	w := bufio.NewWriter(c.stdout)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	return w.Flush()
}

func cmdSort(c *call) error {
	o, names, err := c.getopt("nrufk:t:")
	if err != nil {
		return err
	}
	lines, err := c.readLines(names)
	if err != nil {
		return err
	}
	key := func(s string) string {
		if !o.has('k') {
			return s
		}
		k, _ := strconv.Atoi(strings.SplitN(o.val('k', "1"), ",", 2)[0])
		var f []string
		if sep := o.val('t', ""); sep != "" {
			f = strings.Split(s, sep)
		} else {
			f = strings.Fields(s)
		}
		if k < 1 || k > len(f) {
			return ""
		}
		return strings.Join(f[k-1:], " ")
	}
	cmp := func(a, b string) int {
		a, b = key(a), key(b)
		if o.has('f') {
			a, b = strings.ToLower(a), strings.ToLower(b)
		}
		if o.has('n') {
			x, _ := strconv.ParseFloat(strings.Fields(a + " 0")[0], 64)
			y, _ := strconv.ParseFloat(strings.Fields(b + " 0")[0], 64)
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
		return strings.Compare(a, b)
	}
	slices.SortStableFunc(lines, cmp)
	if o.has('r') {
		slices.Reverse(lines)
	}
	if o.has('u') {
		lines = slices.CompactFunc(lines, func(a, b string) bool { return cmp(a, b) == 0 })
	}
	return c.writeLines(lines)
}

func cmdUniq(c *call) error {
	o, names, err := c.getopt("cdu")
	if err != nil {
		return err
	}
	lines, err := c.readLines(names)
	if err != nil {
		return err
	}
	var out []string
	for i := 0; i < len(lines); {
		j := i + 1
		for j < len(lines) && lines[j] == lines[i] {
			j++
		}
		n := j - i
		if (!o.has('d') || n > 1) && (!o.has('u') || n == 1) {
			if o.has('c') {
				out = append(out, fmt.Sprintf("%7d %s", n, lines[i]))
			} else {
				out = append(out, lines[i])
			}
		}
		i = j
	}
	return c.writeLines(out)
}

// ranges parses cut's LIST ("1,3-5,7-") into a membership test (1-based).
func ranges(list string) (func(int) bool, error) {
	type span struct{ lo, hi int }
	var spans []span
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		var s span
		var err error
		if s.lo, err = strconv.Atoi(lo); lo == "" {
			s.lo, err = 1, nil
		}
		if err != nil {
			return nil, fmt.Errorf("invalid list '%s'", list)
		}
		s.hi = s.lo
		if isRange {
			if s.hi, err = strconv.Atoi(hi); hi == "" {
				s.hi, err = int(^uint(0)>>1), nil
			}
			if err != nil {
				return nil, fmt.Errorf("invalid list '%s'", list)
			}
		}
		spans = append(spans, s)
	}
	return func(i int) bool {
		for _, s := range spans {
			if i >= s.lo && i <= s.hi {
				return true
			}
		}
		return false
	}, nil
}

func cmdCut(c *call) error {
	o, names, err := c.getopt("d:f:c:b:s")
	if err != nil {
		return err
	}
	list := o.val('f', o.val('c', o.val('b', "")))
	if list == "" {
		return c.fail("expected a list of bytes, characters, or fields")
	}
	in, err := ranges(list)
	if err != nil {
		return c.fail("%v", err)
	}
	lines, err := c.readLines(names)
	if err != nil {
		return err
	}
	delim := o.val('d', "\t")
	var out []string
	for _, l := range lines {
		if o.has('f') {
			if !strings.Contains(l, delim) {
				if !o.has('s') {
					out = append(out, l)
				}
				continue
			}
			var keep []string
			for i, f := range strings.Split(l, delim) {
				if in(i + 1) {
					keep = append(keep, f)
				}
			}
			out = append(out, strings.Join(keep, delim))
			continue
		}
		var b strings.Builder
		for i := 0; i < len(l); i++ {
			if in(i + 1) {
				b.WriteByte(l[i])
			}
		}
		out = append(out, b.String())
	}
	return c.writeLines(out)
}

// trSet expands a tr set: ranges "a-z", escapes "\n", classes [:digit:].
func trSet(s string) []byte {
	classes := map[string]string{"[:digit:]": "0-9", "[:lower:]": "a-z", "[:upper:]": "A-Z", "[:alpha:]": "a-zA-Z", "[:alnum:]": "0-9a-zA-Z", "[:space:]": " \t\n\r\v\f"}
	for k, v := range classes {
		s = strings.ReplaceAll(s, k, v)
	}
	s, _ = expandEscapes(s)
	var out []byte
	for i := 0; i < len(s); i++ {
		if i+2 < len(s) && s[i+1] == '-' && s[i] <= s[i+2] {
			for ch := int(s[i]); ch <= int(s[i+2]); ch++ {
				out = append(out, byte(ch))
			}
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

func cmdTr(c *call) error {
	o, sets, err := c.getopt("ds")
	if err != nil {
		return err
	}
	// `tr -s SET1` only squeezes, as busybox tr does (the differential
	// test runs `ls -l | tr -s ' '` on both).
	if len(sets) == 0 || !o.has('d') && !o.has('s') && len(sets) < 2 {
		return c.fail("missing operand")
	}
	var table [256]int
	for i := range table {
		table[i] = i
	}
	from := trSet(sets[0])
	if o.has('d') {
		for _, b := range from {
			table[b] = -1
		}
	} else if len(sets) > 1 {
		to := trSet(sets[1])
		for i, b := range from {
			if len(to) > 0 {
				table[b] = int(to[min(i, len(to)-1)])
			}
		}
	}
	in := bufio.NewReader(c.stdin)
	out := bufio.NewWriter(c.stdout)
	last := -1
	for {
		b, err := in.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		m := table[b]
		if m < 0 || o.has('s') && m == last && slices.Contains(from, b) {
			continue
		}
		out.WriteByte(byte(m))
		last = m
	}
	return out.Flush()
}

func cmdTee(c *call) error {
	o, names, err := c.getopt("a")
	if err != nil {
		return err
	}
	ws := []io.Writer{c.stdout}
	for _, n := range names {
		flag := os.O_TRUNC
		if o.has('a') {
			flag = os.O_APPEND
		}
		f, err := c.create(n, flag)
		if err != nil {
			return c.failErr(n, err)
		}
		defer f.Close()
		ws = append(ws, f)
	}
	_, err = io.Copy(io.MultiWriter(ws...), c.stdin)
	return err
}

func cmdSeq(c *call) error {
	nums := make([]int, 0, 3)
	for _, a := range c.args {
		n, err := strconv.Atoi(a)
		if err != nil {
			return c.fail("invalid number '%s'", a)
		}
		nums = append(nums, n)
	}
	first, step, last := 1, 1, 0
	switch len(nums) {
	case 1:
		last = nums[0]
	case 2:
		first, last = nums[0], nums[1]
	case 3:
		first, step, last = nums[0], nums[1], nums[2]
	default:
		return c.fail("usage: seq [FIRST [INC]] LAST")
	}
	if step == 0 {
		return c.fail("invalid increment")
	}
	w := bufio.NewWriter(c.stdout)
	for i := first; step > 0 && i <= last || step < 0 && i >= last; i += step {
		fmt.Fprintln(w, i)
	}
	return w.Flush()
}

// cmdSed supports the s command: sed [-n] [-e] 's/RE/REPL/[gp]' [FILE...],
// several separated by ';' or given with -e, with a BRE (or ERE with -E/-r).
func cmdSed(c *call) error {
	o, rest, err := c.getopt("ne:Eri")
	if err != nil {
		return err
	}
	if o.has('i') {
		return c.fail("-i is not supported")
	}
	scripts := o.vals['e']
	if len(scripts) == 0 {
		if len(rest) == 0 {
			return c.fail("no script specified")
		}
		scripts, rest = []string{rest[0]}, rest[1:]
	}
	type subst struct {
		re         *regexp.Regexp
		repl       string
		global, pr bool
	}
	var cmds []subst
	for _, sc := range scripts {
		for len(sc) > 0 {
			sc = strings.TrimLeft(sc, " ;\n")
			if sc == "" {
				break
			}
			if len(sc) < 2 || sc[0] != 's' {
				return c.fail("unsupported command '%s' (only s/// is)", sc)
			}
			delim := sc[1]
			parts := []string{}
			cur := strings.Builder{}
			i := 2
			for ; i < len(sc) && len(parts) < 2; i++ {
				switch {
				case sc[i] == '\\' && i+1 < len(sc) && sc[i+1] == delim:
					cur.WriteByte(delim)
					i++
				case sc[i] == delim:
					parts = append(parts, cur.String())
					cur.Reset()
				default:
					cur.WriteByte(sc[i])
				}
			}
			if len(parts) < 2 {
				return c.fail("unterminated 's' command")
			}
			j := i
			for j < len(sc) && sc[j] != ';' && sc[j] != '\n' {
				j++
			}
			flags := sc[i:j]
			sc = sc[j:]
			expr := parts[0]
			if !o.has('E') && !o.has('r') {
				expr = bre(expr)
			}
			re, err := regexp.Compile(expr)
			if err != nil {
				return c.fail("bad regex '%s': %v", parts[0], err)
			}
			repl := regexp.MustCompile(`\\([0-9])`).ReplaceAllString(strings.ReplaceAll(parts[1], "$", "$$"), "${$1}")
			repl = strings.ReplaceAll(repl, "&", "${0}")
			repl = strings.ReplaceAll(repl, `\${0}`, "&")
			cmds = append(cmds, subst{re, repl, strings.Contains(flags, "g"), strings.Contains(flags, "p")})
		}
	}
	lines, err := c.readLines(rest)
	if err != nil {
		return err
	}
	var out []string
	for _, l := range lines {
		for _, s := range cmds {
			if !s.re.MatchString(l) {
				continue
			}
			if s.global {
				l = s.re.ReplaceAllString(l, s.repl)
			} else {
				loc := s.re.FindStringSubmatchIndex(l)
				l = l[:loc[0]] + string(s.re.ExpandString(nil, s.repl, l, loc)) + l[loc[1]:]
			}
			if s.pr {
				out = append(out, l)
			}
		}
		if !o.has('n') {
			out = append(out, l)
		}
	}
	return c.writeLines(out)
}
