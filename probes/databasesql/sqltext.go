package databasesql

import (
	"strings"
	"unicode/utf8"
)

// A statement's text is exported only with its literals replaced: a password or a token
// an app writes into a statement, rather than binding it to a placeholder, must never
// leave. Statements written with placeholders, which have no literals, stay as written.

// dialect is how a database reads quotes. Where it is not known, both readings that
// could hide a secret are taken: "..." is a string, and a backslash escapes.
type dialect struct {
	// doubleQuotedStrings: "..." may be a string (MySQL; SQLite, for a name that is no
	// column's), not only an identifier (PostgreSQL, the standard).
	doubleQuotedStrings bool
	// backslash: what a backslash in a string does.
	backslash backslashRule
}

type backslashRule int

const (
	backslashPlain   backslashRule = iota // a character like another (the standard, PostgreSQL, SQLite)
	backslashEscapes                      // escapes the next character (MySQL; PostgreSQL's E'...')
	backslashUnknown                      // either: the rest of the text goes with the string
)

// dialectOf is the dialect of a db.system.name.
func dialectOf(system string) dialect {
	switch system {
	case "postgresql":
		return dialect{}
	case "sqlite":
		return dialect{doubleQuotedStrings: true}
	case "mysql":
		return dialect{doubleQuotedStrings: true, backslash: backslashEscapes}
	default:
		return dialect{doubleQuotedStrings: true, backslash: backslashUnknown}
	}
}

// queryTextMax bounds db.query.text, in bytes.
const queryTextMax = 1024

// sanitize returns the statement with every string, number and hexadecimal literal
// replaced by ?, comments removed, placeholders ($1, ?, :name, @p1) and identifiers
// kept. A literal or comment left open at the end (the text kept of a longer statement
// was cut there) goes to the end. The dialect says how strings are quoted.
func sanitize(text string, d dialect) string {
	var b strings.Builder
	b.Grow(len(text))
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '\'' || (c == '"' && d.doubleQuotedStrings):
			i = skipQuoted(text, i, c, d.backslash)
			b.WriteByte('?')
		case (c == 'E' || c == 'e' || c == 'X' || c == 'x' || c == 'B' || c == 'b' || c == 'N' || c == 'n') &&
			i+1 < len(text) && text[i+1] == '\'' && !identByte(prev(text, i)):
			i = skipQuoted(text, i+1, '\'', escapeRule(d, c)) // E'...', X'...', B'...', N'...'
			b.WriteByte('?')
		case c == '$' && dollarTag(text, i) != "":
			tag := dollarTag(text, i)
			end := strings.Index(text[i+len(tag):], tag)
			if end < 0 {
				i = len(text)
			} else {
				i += len(tag) + end + len(tag)
			}
			b.WriteByte('?')
		case c == '-' && strings.HasPrefix(text[i:], "--"):
			if nl := strings.IndexByte(text[i:], '\n'); nl >= 0 {
				i += nl
			} else {
				i = len(text)
			}
		case c == '/' && strings.HasPrefix(text[i:], "/*"):
			if end := strings.Index(text[i+2:], "*/"); end >= 0 {
				i += 2 + end + 2
			} else {
				i = len(text)
			}
		case (c >= '0' && c <= '9' || c == '.' && i+1 < len(text) && isDigit(text[i+1])) && !identByte(prev(text, i)) && prev(text, i) != '$':
			i++
			for i < len(text) && (identByte(text[i]) || text[i] == '.' ||
				(text[i] == '+' || text[i] == '-') && (text[i-1] == 'e' || text[i-1] == 'E')) {
				i++
			}
			b.WriteByte('?')
		default:
			b.WriteByte(c)
			i++
		}
	}
	out := b.String()
	if len(out) > queryTextMax {
		out = out[:queryTextMax]
		for !utf8.ValidString(out) {
			out = out[:len(out)-1]
		}
	}
	return out
}

// escapeRule is the backslash rule of a prefixed string: E'...' escapes.
func escapeRule(d dialect, prefix byte) backslashRule {
	if (prefix == 'E' || prefix == 'e') && d.backslash == backslashPlain {
		return backslashEscapes
	}
	return d.backslash
}

// skipQuoted returns the index after the literal quoted by q that starts at i, doubled
// quotes (and escapes, by the rule) inside; the text's end if it is not closed.
func skipQuoted(text string, i int, q byte, backslash backslashRule) int {
	for j := i + 1; j < len(text); j++ {
		switch text[j] {
		case '\\':
			switch backslash {
			case backslashEscapes:
				j++
			case backslashUnknown:
				return len(text)
			}
		case q:
			if j+1 < len(text) && text[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(text)
}

// dollarTag is the PostgreSQL dollar quote that starts at i ("$$", "$body$"), or "":
// "$1" is a placeholder.
func dollarTag(text string, i int) string {
	if identByte(prev(text, i)) {
		return ""
	}
	for j := i + 1; j < len(text); j++ {
		switch c := text[j]; {
		case c == '$':
			return text[i : j+1]
		case c >= '0' && c <= '9' && j == i+1:
			return ""
		case !identByte(c):
			return ""
		}
	}
	return ""
}

func prev(text string, i int) byte {
	if i == 0 {
		return ' '
	}
	return text[i-1]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func identByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c >= 0x80
}

// summarize reads a simple statement's operation and the one table it names
// (SELECT ... FROM t, INSERT INTO t, UPDATE t, DELETE FROM t, CREATE/DROP/ALTER TABLE
// t): db.operation.name and db.collection.name. A statement of several statements, or
// that names several tables (a join, a list, a subquery), gets only its operation; one
// that is not plain SQL, neither.
func summarize(text string) (operation, collection string) {
	words := sqlWords(text)
	if len(words) == 0 {
		return "", ""
	}
	op := strings.ToUpper(words[0])
	switch op {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "MERGE", "UPSERT", "REPLACE",
		"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "WITH", "SET", "SHOW", "EXPLAIN", "CALL", "VACUUM", "ANALYZE", "PRAGMA", "COPY", "LOCK", "GRANT", "REVOKE":
	default:
		return "", ""
	}
	if strings.Count(strings.TrimRight(strings.TrimSpace(text), ";"), ";") > 0 {
		return op, "" // several statements
	}
	after := func(keyword string) (string, bool) {
		for i, w := range words {
			if strings.EqualFold(w, keyword) && i+1 < len(words) {
				return words[i+1], true
			}
		}
		return "", false
	}
	var table string
	switch op {
	case "SELECT", "DELETE":
		table, _ = after("FROM")
	case "INSERT", "REPLACE", "UPSERT", "MERGE":
		table, _ = after("INTO")
	case "UPDATE", "TRUNCATE":
		table = words[1]
		if strings.EqualFold(table, "TABLE") && len(words) > 2 {
			table = words[2]
		}
	case "CREATE", "DROP", "ALTER":
		if len(words) > 2 && strings.EqualFold(words[1], "TABLE") {
			table = words[2]
			for _, skip := range []string{"IF", "NOT", "EXISTS"} {
				if strings.EqualFold(table, skip) {
					table, _ = afterAll(words, skip)
				}
			}
		}
		op += " TABLE"
		if table == "" {
			op = strings.ToUpper(words[0])
		}
	}
	lower := strings.ToLower(" " + strings.Join(words, " ") + " ")
	if strings.Contains(lower, " join ") || strings.Count(lower, " from ") > 1 || strings.Contains(lower, " select ") && op != "SELECT" ||
		strings.Count(lower, " select ") > 1 || table == "(" || table == "" || strings.HasSuffix(table, ",") {
		return op, ""
	}
	if i := strings.IndexAny(table, ",("); i >= 0 {
		table = table[:i]
	}
	if strings.Contains(lower, " from "+strings.ToLower(table)+" ,") || strings.Contains(lower, " from "+strings.ToLower(table)+",") {
		return op, ""
	}
	return op, strings.Trim(table, "\"`[]")
}

func afterAll(words []string, keyword string) (string, bool) {
	for i := len(words) - 1; i >= 0; i-- {
		if strings.EqualFold(words[i], keyword) && i+1 < len(words) {
			return words[i+1], true
		}
	}
	return "", false
}

// sqlWords splits a statement into words: runs of identifier bytes, quoted
// identifiers, and the punctuation "(", ",", each its own word.
func sqlWords(text string) []string {
	var words []string
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case identByte(c) || c == '.':
			j := i
			for j < len(text) && (identByte(text[j]) || text[j] == '.' || text[j] == '"' || text[j] == '`') {
				j++
			}
			words = append(words, text[i:j])
			i = j
		case c == '"' || c == '`':
			j := skipQuoted(text, i, c, backslashPlain)
			for j < len(text) && (identByte(text[j]) || text[j] == '.' || text[j] == '"') {
				j++
			}
			words = append(words, text[i:j])
			i = j
		case c == '(' || c == ',':
			words = append(words, string(c))
			i++
		default:
			i++
		}
	}
	return words
}
