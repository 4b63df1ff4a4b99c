package databasesql

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// What a failed operation says of itself, beyond the error's Go type: the database's
// own code for the failure (db.response.status_code, and error.type, as the
// conventions ask) and its message (the span's status description), read by the C
// program from the drivers' errors it knows.
//
// A message may quote the app's data: MySQL's "Duplicate entry 'alice@example.com'
// for key 'users.email'", PostgreSQL's `invalid input syntax for type integer: "abc"`.
// As with a statement's literals, none of it may leave. Messages are not statements:
// the quotes they put around what they quote are not escaped, so a value holding a
// quote cannot be told from the text after it. So the description hides, rather than
// one quoted part at a time, everything from the first quote that opens to the last
// that closes (all of it if the message was cut), and every word holding a digit (a
// row number, a byte of the app's data, "0xff"). A message written by the app itself
// (PostgreSQL's RAISE, class P0; MySQL's SIGNAL, errors 1642-1644) may hold its data
// anywhere: it gives no description; nor does a message in another character set than
// ASCII, whose quotes the probe does not know (a server's lc_messages in German quotes
// with »«).

// Error kinds, as the C program sets them (ERROR_*).
const (
	errorSQLState = 1 // code: a SQLSTATE (pgx, lib/pq)
	errorNumber   = 2 // number: MySQL's error number
)

// statusCode is db.response.status_code for a driver's error the C program read: a
// SQLSTATE as PostgreSQL sends it (five digits or upper-case letters) or MySQL's error
// number; "" for none or anything else (never a wrong one).
func statusCode(kind uint8, code []byte, number uint16) string {
	switch kind {
	case errorSQLState:
		if len(code) != 5 {
			return ""
		}
		for _, c := range code {
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
				return ""
			}
		}
		return string(code)
	case errorNumber:
		if number == 0 {
			return ""
		}
		return strconv.Itoa(int(number))
	}
	return ""
}

// appMessage says whether an error's message is the app's own text: PostgreSQL's class
// P0 (PL/pgSQL's RAISE, ASSERT), MySQL's SIGNAL (1642 a warning, 1643 not found, 1644
// an exception).
func appMessage(kind uint8, code string) bool {
	switch kind {
	case errorSQLState:
		return strings.HasPrefix(code, "P0")
	case errorNumber:
		return code == "1642" || code == "1643" || code == "1644"
	}
	return false
}

// describe is the status description of an error whose message starts with msg
// (the whole message when cut is false): msg with what it quotes and its words holding
// a digit replaced by "?", its white space made single spaces; "" for a message that
// is not ASCII or says nothing once hidden.
func describe(msg []byte, cut bool) string {
	for _, c := range msg {
		if c >= utf8.RuneSelf || c == 0x7f || c < ' ' && c != '\t' && c != '\n' && c != '\r' {
			return ""
		}
	}
	s := string(msg)
	if cut { // a word cut short says nothing
		s = strings.TrimRightFunc(s, func(r rune) bool { return r < utf8.RuneSelf && identByte(byte(r)) })
	}
	// The first quote that opens (not after a letter or digit: "doesn't" holds no
	// quote), the last that closes (not before one), and the last that closes of the
	// first's kind: without one, the first never closes.
	first, last, lastSame := -1, -1, -1
	for i := 0; i < len(s); i++ {
		if !isQuote(s[i]) {
			continue
		}
		if first < 0 {
			if i == 0 || !identByte(s[i-1]) {
				first = i
			}
			continue
		}
		if i+1 == len(s) || !identByte(s[i+1]) {
			last = i
			if s[i] == s[first] {
				lastSame = i
			}
		}
	}
	if first >= 0 {
		rest := ""
		if !cut && lastSame > first {
			rest = s[last+1:]
		}
		s = s[:first] + "?" + rest
	}
	var b strings.Builder
	words := false // whether a word without a digit is left
	space := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			space = b.Len() > 0
			i++
			continue
		case identByte(c):
			j, digit := i, false
			for ; j < len(s) && identByte(s[j]); j++ {
				digit = digit || isDigit(s[j])
			}
			if space {
				b.WriteByte(' ')
				space = false
			}
			if digit {
				b.WriteByte('?')
			} else {
				b.WriteString(s[i:j])
				words = true
			}
			i = j
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(c)
		i++
	}
	if !words {
		return ""
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

func isQuote(c byte) bool { return c == '\'' || c == '"' || c == '`' }
