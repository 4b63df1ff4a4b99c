package databasesql

import (
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// A statement's text is exported only with its literals replaced and its comments
// removed: a password or a token an app writes into a statement, rather than binding it
// to a placeholder, must never leave, nor what it writes in a comment. Statements
// written with placeholders, which have no literals, stay as written. The span's name,
// db.operation.name and db.collection.name are read from the sanitized text only.

// A reading is one way a database splits a statement into tokens: where its strings,
// quoted identifiers and comments start and end. Where a database may read a
// statement in several ways (a server's settings, such as MySQL's sql_mode, or a
// database not known), every reading is taken and a byte is kept only if none of them
// has it in a literal or a comment.
type reading struct {
	dqStrings    bool          // "..." is a string, else an identifier
	backslash    backslashRule // in '...' (and "..." strings)
	eStrings     bool          // E'...' escapes with backslashes (PostgreSQL)
	backticks    bool          // `...` is an identifier (MySQL, SQLite)
	brackets     bracketRule   // [...] is an identifier (SQLite, SQL Server)
	nested       bool          // /* */ comments nest (PostgreSQL, SQL Server)
	hash         bool          // # starts a comment to the end of the line (MySQL)
	dashSpace    bool          // -- starts a comment only before a space or a control character (MySQL)
	crEndsLine   bool          // \r ends a line comment, as \n does (PostgreSQL)
	dollar       bool          // $1 is a parameter, $tag$...$tag$ a string (PostgreSQL)
	dollarParams bool          // $name is a parameter or a name (SQLite, MySQL)
	dollarPlain  bool          // $$...$$ is a string, without tags (Snowflake)
	money        bool          // $12.50 is a literal (SQL Server)
	execComments bool          // /*!...*/, /*M!...*/ and /*+...*/ hold SQL, whose quotes may hold */ (MySQL)
	slashSlash   bool          // // starts a comment to the end of the line (Snowflake)
	qQuotes      bool          // q'[...]' is a string (Oracle)
	tripleQuotes bool          // '''...''' and """...""" are strings (Spanner's GoogleSQL)
}

type backslashRule uint8

const (
	backslashPlain   backslashRule = iota // a character like another (the standard, PostgreSQL, SQLite)
	backslashEscapes                      // escapes the next character (MySQL; PostgreSQL's E'...')
	backslashUnknown                      // either: the rest of the text goes with the string
)

type bracketRule uint8

const (
	noBrackets      bracketRule = iota
	bracketsToFirst             // SQLite: [...] ends at the first ]
	bracketsDoubled             // SQL Server: ]] is a ] inside
)

// dialect is the readings of a database's statements.
type dialect struct {
	readings []reading
	mu       sync.Mutex
	distinct map[features][]reading // the readings that differ, for a text with these features
}

func newDialect(rs ...[]reading) *dialect {
	return &dialect{readings: slices.Concat(rs...), distinct: map[features][]reading{}}
}

// distinctReadings are the readings of a text with features f that read it
// differently: most statements are read once.
func (d *dialect) distinctReadings(f features) []reading {
	d.mu.Lock()
	defer d.mu.Unlock()
	rs, ok := d.distinct[f]
	if !ok {
		for _, r := range d.readings {
			if r = f.normalize(r); !slices.Contains(rs, r) {
				rs = append(rs, r)
			}
		}
		d.distinct[f] = rs // at most one entry for each set of features (2^13)
	}
	return rs
}

// The databases' readings. MySQL's depend on the session's sql_mode (ANSI_QUOTES,
// NO_BACKSLASH_ESCAPES) and on whether a version comment's SQL runs; SQL Server's line
// comments may end at a \r. The other databases' readings also come with PostgreSQL's
// dollar quotes and E'...' strings, as the probe has always read them in every
// database: one that has none reads those bytes as other tokens, and hiding more is the
// safe side.
var (
	postgresReading = reading{eStrings: true, nested: true, crEndsLine: true, dollar: true}
	// otherReading hides the most where a backslash in a string may escape: the rest of
	// the text.
	otherReading = reading{dqStrings: true, backslash: backslashUnknown, dollar: true}

	postgresReadings = []reading{postgresReading}
	sqliteReadings   = withDollarQuotes(reading{dqStrings: true, backticks: true, brackets: bracketsToFirst, dollarParams: true})
	mysqlReadings    = withDollarQuotes(mysqlModes()...)
	// SQL Server's "..." is a string with QUOTED_IDENTIFIER off.
	sqlServerReadings = withDollarQuotes(
		reading{dqStrings: true, brackets: bracketsDoubled, nested: true, money: true},
		reading{dqStrings: true, brackets: bracketsDoubled, nested: true, money: true, crEndsLine: true})

	postgresDialect  = newDialect(postgresReadings)
	sqliteDialect    = newDialect(sqliteReadings)
	mysqlDialect     = newDialect(mysqlReadings)
	sqlServerDialect = newDialect(sqlServerReadings)
	// otherDialect is a database not known: every reading above, Oracle's q'[...]'
	// strings, Snowflake's // comments, GoogleSQL's triple-quoted strings (Spanner).
	otherDialect = newDialect(postgresReadings, sqliteReadings, mysqlReadings, sqlServerReadings, []reading{
		{qQuotes: true},
		{tripleQuotes: true, dqStrings: true, backslash: backslashEscapes, hash: true},
		{backslash: backslashEscapes, slashSlash: true, dollarPlain: true},
		otherReading,
	})
)

// mysqlModes are MySQL's readings: backslashes escape or not (NO_BACKSLASH_ESCAPES),
// "..." is a string or a name (ANSI_QUOTES), a version comment's SQL runs or not.
func mysqlModes() []reading {
	var rs []reading
	for _, backslash := range []backslashRule{backslashEscapes, backslashPlain} {
		for _, ansiQuotes := range []bool{false, true} {
			for _, exec := range []bool{false, true} {
				rs = append(rs, reading{dqStrings: !ansiQuotes, backslash: backslash, backticks: true, hash: true,
					dashSpace: true, dollarParams: true, execComments: exec})
			}
		}
	}
	return rs
}

// withDollarQuotes is the readings, and each with PostgreSQL's dollar quotes and E'...'.
func withDollarQuotes(rs ...reading) []reading {
	all := slices.Clone(rs)
	for _, r := range rs {
		r.dollar, r.eStrings, r.dollarParams, r.money = true, true, false, false
		all = append(all, r)
	}
	return all
}

// dialectOf is the dialect of a db.system.name.
func dialectOf(system string) *dialect {
	switch system {
	case "postgresql":
		return postgresDialect
	case "sqlite":
		return sqliteDialect
	case "mysql":
		return mysqlDialect
	case "microsoft.sql_server":
		return sqlServerDialect
	default:
		return otherDialect
	}
}

// queryTextMax bounds db.query.text, in bytes.
const queryTextMax = 1024

// What each byte of a statement is, in one reading or another.
const (
	kept    byte = iota
	comment      // removed
	literal      // replaced by ?
)

// sanitize returns the statement with every string, number and hexadecimal literal
// replaced by ?, comments removed, placeholders ($1, ?, :name, @p1) and identifiers
// kept. A literal or comment left open at the end (the text kept of a longer statement
// was cut there) goes to the end. A byte that any of the dialect's readings has in a
// literal or a comment is not kept.
func sanitize(text string, d *dialect) string {
	var buf [queryTextMax]byte // the C program's bound: no allocation for its texts
	marks := buf[:0]
	if len(text) <= len(buf) {
		marks = buf[:len(text)]
	} else {
		marks = make([]byte, len(text))
	}
	if len(d.readings) == 1 {
		d.readings[0].mark(text, marks)
	} else if f := featuresOf(text); f == (features{}) { // no byte that readings tell apart
		reading{}.mark(text, marks)
	} else {
		for _, r := range d.distinctReadings(f) {
			r.mark(text, marks)
		}
	}
	var b strings.Builder
	b.Grow(min(len(text), queryTextMax))
	i := 0
	for i < len(text) && b.Len() < queryTextMax {
		if marks[i] == kept {
			j := i + 1
			for j < len(text) && marks[j] == kept {
				j++
			}
			j = min(j, i+queryTextMax-b.Len())
			b.WriteString(text[i:j])
			i = j
			continue
		}
		lit := false
		for ; i < len(text) && marks[i] != kept; i++ {
			lit = lit || marks[i] == literal
		}
		if lit {
			b.WriteByte('?')
		}
	}
	out := b.String()
	if i < len(text) { // cut at the bound: a character cut there goes
		out = trimCutRune(out)
	}
	if !utf8.ValidString(out) {
		// OTLP's strings are UTF-8: a collector refuses a whole export that holds
		// other bytes (a statement in Latin-1, say).
		out = strings.ToValidUTF8(out, "\uFFFD")
		for len(out) > queryTextMax {
			out = trimCutRune(out[:queryTextMax])
		}
	}
	return out
}

// trimCutRune drops the bytes of a character cut at s's end.
func trimCutRune(s string) string {
	for k := 0; k < utf8.UTFMax-1 && len(s) > 0; k++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// features are what a text holds that some readings read differently: readings that
// differ only in what a text does not hold read it alike.
type features struct {
	backslash, dquote, backtick, bracket, nestable, exec, hash, dashes, cr, dollar, slashes, qQuote, eQuote, triple bool
}

func featuresOf(text string) features {
	var f features
	opens := 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '\\':
			f.backslash = true
		case '"':
			f.dquote = true
			f.triple = f.triple || strings.HasPrefix(text[i:], `"""`)
		case '`':
			f.backtick = true
		case '[':
			f.bracket = true
		case '#':
			f.hash = true
		case '\r':
			f.cr = true
		case '$':
			f.dollar = true
		case '-':
			f.dashes = f.dashes || strings.HasPrefix(text[i+1:], "-")
		case '\'':
			f.qQuote = f.qQuote || i > 0 && (text[i-1] == 'q' || text[i-1] == 'Q')
			f.triple = f.triple || strings.HasPrefix(text[i:], "'''")
			f.eQuote = f.eQuote || i > 0 && (text[i-1] == 'e' || text[i-1] == 'E')
		case '/':
			rest := text[i+1:]
			f.slashes = f.slashes || strings.HasPrefix(rest, "/")
			if strings.HasPrefix(rest, "*") {
				opens++
				rest = rest[1:]
				f.exec = f.exec || strings.HasPrefix(rest, "!") || strings.HasPrefix(rest, "+") || strings.HasPrefix(rest, "M!")
			}
		}
	}
	f.nestable = opens > 1
	return f
}

// normalize is r without the rules that read this text as the plain reading does.
func (f features) normalize(r reading) reading {
	if !f.backslash {
		r.backslash = backslashPlain
	}
	if !f.eQuote {
		r.eStrings = false
	}
	if !f.dquote {
		r.dqStrings = false
	}
	if !f.backtick {
		r.backticks = false
	}
	if !f.bracket {
		r.brackets = noBrackets
	}
	if !f.nestable {
		r.nested = false
	}
	if !f.exec {
		r.execComments = false
	}
	if !f.hash {
		r.hash = false
	}
	if !f.dashes {
		r.dashSpace = false
	}
	if !f.cr {
		r.crEndsLine = false
	}
	if !f.dollar {
		r.dollar, r.dollarParams, r.dollarPlain, r.money = false, false, false, false
	}
	if !f.slashes {
		r.slashSlash = false
	}
	if !f.qQuote {
		r.qQuotes = false
	}
	if !f.triple {
		r.tripleQuotes = false
	}
	return r
}

// mark raises marks[i] to what byte i is in this reading.
func (r reading) mark(text string, marks []byte) {
	exec := false // inside MySQL's /*!...*/: its SQL is read, and goes with the comment
	for i := 0; i < len(text); {
		start, kind := i, kept
		c := text[i]
		switch {
		case (c == '\'' || c == '"') && r.tripleQuotes && i+2 < len(text) && text[i+1] == c && text[i+2] == c:
			i, kind = skipTripleQuoted(text, i, r.backslash), literal
		case c == '\'':
			i, kind = skipQuoted(text, i, '\'', r.backslash), literal
		case c == '"' && r.dqStrings:
			i, kind = skipQuoted(text, i, '"', r.backslash), literal
		case c == '"':
			i = skipQuoted(text, i, '"', backslashPlain)
		case c == '`' && r.backticks:
			i = skipQuoted(text, i, '`', backslashPlain)
		case c == '[' && r.brackets != noBrackets:
			i = r.skipBrackets(text, i)
		case identStart(c):
			j := i + 1
			for j < len(text) && (identByte(text[j]) || text[j] == '$') {
				j++
			}
			i = j
			if j < len(text) && text[j] == '\'' {
				i, kind = r.prefixed(text, start, j) // E'...', X'...', q'[...]'
			}
		case isDigit(c) || c == '.' && i+1 < len(text) && isDigit(text[i+1]):
			i, kind = skipNumber(text, i), literal
		case c == '$':
			i, kind = r.dollarToken(text, i)
		case c == '-' && next(text, i) == '-' && (!r.dashSpace || i+2 >= len(text) || text[i+2] <= ' ' || text[i+2] == 0x7f),
			c == '#' && r.hash,
			c == '/' && next(text, i) == '/' && r.slashSlash:
			i, kind = r.lineEnd(text, i), comment
		case c == '/' && next(text, i) == '*':
			kind = comment
			if n := execOpener(text[i:]); r.execComments && !exec && n > 0 {
				exec, i = true, i+n
			} else {
				i = r.skipBlock(text, i)
			}
		case c == '*' && next(text, i) == '/' && exec:
			exec, i, kind = false, i+2, comment
		default:
			i++
		}
		if exec {
			kind = comment // its literals too: the whole comment goes, without a ?
		}
		if kind != kept {
			for k := start; k < i; k++ {
				marks[k] = max(marks[k], kind)
			}
		}
	}
}

// prefixed reads the token from start whose quote is at q: a prefixed string (E'...'
// escapes in PostgreSQL; X'...', B'...', N'...'; Oracle's q'[...]') is one literal;
// another word is kept, and its quote read next.
func (r reading) prefixed(text string, start, q int) (int, byte) {
	switch w := text[start:q]; {
	case strings.EqualFold(w, "e"):
		if r.eStrings {
			return skipQuoted(text, q, '\'', backslashEscapes), literal
		}
	case strings.EqualFold(w, "x"), strings.EqualFold(w, "b"), strings.EqualFold(w, "n"):
		return skipQuoted(text, q, '\'', r.backslash), literal
	case strings.EqualFold(w, "q"), strings.EqualFold(w, "nq"):
		if r.qQuotes && q+1 < len(text) && text[q+1] > ' ' {
			closing := text[q+1]
			switch closing {
			case '[':
				closing = ']'
			case '{':
				closing = '}'
			case '<':
				closing = '>'
			case '(':
				closing = ')'
			}
			if end := strings.Index(text[q+2:], string([]byte{closing, '\''})); end >= 0 {
				return q + 2 + end + 2, literal
			}
			return len(text), literal
		}
	}
	return q, kept
}

// dollarToken reads the token at a $.
func (r reading) dollarToken(text string, i int) (int, byte) {
	switch {
	case r.dollar:
		j := i + 1
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		if j > i+1 {
			return j, kept // $1
		}
		if tag := dollarTag(text, i); tag != "" {
			if end := strings.Index(text[i+len(tag):], tag); end >= 0 {
				return i + len(tag) + end + len(tag), literal
			}
			return len(text), literal
		}
	case r.dollarPlain && strings.HasPrefix(text[i:], "$$"):
		if end := strings.Index(text[i+2:], "$$"); end >= 0 {
			return i + 2 + end + 2, literal
		}
		return len(text), literal
	case r.money && (isDigit(next(text, i)) || next(text, i) == '.' && i+2 < len(text) && isDigit(text[i+2])):
		return skipNumber(text, i+1), literal
	case r.dollarParams:
		j := i + 1
		for j < len(text) && (identByte(text[j]) || text[j] == '$') {
			j++
		}
		return j, kept
	}
	return i + 1, kept
}

// lineEnd is where the line comment at i ends: before the line's end.
func (r reading) lineEnd(text string, i int) int {
	for ; i < len(text); i++ {
		if text[i] == '\n' || text[i] == '\r' && r.crEndsLine {
			return i
		}
	}
	return len(text)
}

// skipBlock returns the index after the block comment at i: the first */, or the one
// that closes it where comments nest.
func (r reading) skipBlock(text string, i int) int {
	if !r.nested {
		if end := strings.Index(text[i+2:], "*/"); end >= 0 {
			return i + 2 + end + 2
		}
		return len(text)
	}
	depth := 0
	for j := i; j+1 < len(text); {
		switch {
		case text[j] == '/' && text[j+1] == '*':
			depth++
			j += 2
		case text[j] == '*' && text[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j
			}
		default:
			j++
		}
	}
	return len(text)
}

// execOpener is the length of a MySQL comment opener whose content is SQL, or 0.
func execOpener(s string) int {
	switch {
	case strings.HasPrefix(s, "/*!"), strings.HasPrefix(s, "/*+"):
		return 3
	case strings.HasPrefix(s, "/*M!"):
		return 4
	}
	return 0
}

func (r reading) skipBrackets(text string, i int) int {
	for j := i + 1; j < len(text); j++ {
		if text[j] == ']' {
			if r.brackets == bracketsDoubled && j+1 < len(text) && text[j+1] == ']' {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(text)
}

// skipNumber returns the index after the number at i (12, 1.5e-3, 0x1F, 1_000).
func skipNumber(text string, i int) int {
	for i++; i < len(text) && (identByte(text[i]) || text[i] == '.' ||
		(text[i] == '+' || text[i] == '-') && (text[i-1] == 'e' || text[i-1] == 'E')); i++ {
	}
	return i
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

// skipTripleQuoted returns the index after the triple-quoted string at i (”'...”',
// """...""").
func skipTripleQuoted(text string, i int, backslash backslashRule) int {
	q := text[i : i+3]
	for j := i + 3; j < len(text); j++ {
		switch {
		case text[j] == '\\' && backslash == backslashEscapes:
			j++
		case text[j] == '\\' && backslash == backslashUnknown:
			return len(text)
		case strings.HasPrefix(text[j:], q):
			return j + 3
		}
	}
	return len(text)
}

// dollarTag is the PostgreSQL dollar quote that starts at i ("$$", "$body$"), or "":
// "$1" is a placeholder.
func dollarTag(text string, i int) string {
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

func next(text string, i int) byte {
	if i+1 < len(text) {
		return text[i+1]
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func identStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func identByte(c byte) bool { return identStart(c) || isDigit(c) }

// summarize reads a simple statement's operation and the one table it names
// (SELECT ... FROM t, INSERT INTO t, UPDATE t, DELETE FROM t, CREATE/DROP/ALTER TABLE
// t): db.operation.name and db.collection.name. A statement of several statements, or
// that names several tables (a join, a list, a subquery), gets only its operation; one
// that is not plain SQL, neither. The text is a sanitized one: a literal is a ?, which
// names no table.
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
		if len(words) > 1 { // "UPDATE" alone, or all else a comment
			table = words[1]
		}
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
		strings.Count(lower, " select ") > 1 || table == "" || !nameStart(table[0]) || strings.HasSuffix(table, ",") {
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
// identifiers, and the punctuation "(", ",", and a literal's or a parameter's "?",
// each its own word.
func sqlWords(text string) []string {
	words := make([]string, 0, 32) // one allocation for most statements
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
		case c == '(' || c == ',' || c == '?':
			words = append(words, string(c))
			i++
		default:
			i++
		}
	}
	return words
}

// nameStart says whether a word that starts with c may be a table's name: a name or a
// quoted name, never a literal's ?, a parameter or a parenthesis.
func nameStart(c byte) bool { return identStart(c) || c == '"' || c == '`' || c == '[' }
