// Package spell suggests the name a user most likely meant when a key,
// member or keyword is misspelled ("did you mean ...?").
package spell

import "strings"

// Suggest returns the name in known closest to s by edit distance, or ""
// when none is close enough to be a likely typo.
func Suggest(s string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		d := editDistance(s, k)
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	// A typo is a few edits, or the known name with a prefix or suffix
	// missing (kernel_consol, cipher_suite).
	limit := max(1, len(s)/3)
	if bestD >= 0 && (bestD <= limit || strings.HasPrefix(best, s) || strings.HasPrefix(s, best)) {
		return best
	}
	// An abbreviation (dhcp_iface for dhcp_interface).
	for _, k := range known {
		if len(s) >= 4 && subsequence(s, k) {
			return k
		}
	}
	return ""
}

// subsequence reports whether s is t with some characters left out.
func subsequence(s, t string) bool {
	i := 0
	for j := 0; i < len(s) && j < len(t); j++ {
		if s[i] == t[j] {
			i++
		}
	}
	return i == len(s)
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours (sned for
// send) cost one each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
