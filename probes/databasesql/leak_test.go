package databasesql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// Statements written as each database reads them, with secrets in their literals and
// comments: no secret, nor any part of one, is ever exported — in db.query.text, the
// span's name, db.operation.name, db.collection.name, or the duration metric's
// attributes. The generator writes each statement for one reading of one database (a
// MySQL session's sql_mode is one of its four); the probe is told that database, or
// other_sql, and must hide every reading's literals and comments.

// A chooser makes the generator's choices.
type chooser interface{ intn(n int) int } // in [0, n)

type randChooser struct{ *rand.Rand }

func (c randChooser) intn(n int) int { return c.IntN(n) }

// bytesChooser makes each choice of a fuzzer's bytes; 0 once they run out, which ends
// every list.
type bytesChooser struct{ b []byte }

func (c *bytesChooser) intn(n int) int {
	if len(c.b) == 0 || n <= 1 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % n
}

// source is the database, and its reading, a statement is written for.
type source struct {
	db       string // postgresql, mysql, sqlite, mssql, oracle, snowflake, spanner
	escapes  bool   // a backslash escapes in '...' (MySQL without NO_BACKSLASH_ESCAPES; Snowflake)
	dqString bool   // "..." is a string (MySQL without ANSI_QUOTES; SQLite, SQL Server may read it so)
	crEnds   bool   // a line comment ends at \r too (PostgreSQL; SQL Server may read it so)
	system   string // what the probe is told
}

// sources are every database's readings, each told as its database and as one not known.
func sources() []source {
	var ss []source
	add := func(s source) {
		ss = append(ss, s)
		s.system = "other_sql"
		ss = append(ss, s)
	}
	add(source{db: "postgresql", crEnds: true, system: "postgresql"})
	for _, escapes := range []bool{true, false} {
		for _, dq := range []bool{true, false} {
			add(source{db: "mysql", escapes: escapes, dqString: dq, system: "mysql"})
		}
	}
	add(source{db: "sqlite", dqString: true, system: "sqlite"})
	for _, cr := range []bool{true, false} {
		add(source{db: "mssql", dqString: true, crEnds: cr, system: "microsoft.sql_server"})
	}
	ss = append(ss, source{db: "oracle", system: "other_sql"}, source{db: "snowflake", escapes: true, system: "other_sql"},
		source{db: "spanner", escapes: true, dqString: true, system: "other_sql"})
	return ss
}

// secret is a distinctive string put in a literal or a comment: no run of window
// bytes of it may be exported.
type secret struct {
	text   string
	window int
}

type gen struct {
	c       chooser
	src     source
	secrets []secret
	made    *rand.Rand // the secrets' bytes: distinctive whatever the choices
}

func newGen(c chooser, src source, seed uint64) *gen {
	return &gen{c: c, src: src, made: rand.New(rand.NewPCG(seed, 0x5ec7e75))}
}

const (
	letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digits  = "0123456789"
	hexits  = "0123456789abcdef"
)

func (g *gen) secret(alphabet string, n, window int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.made.IntN(len(alphabet))]
	}
	g.secrets = append(g.secrets, secret{string(b), window})
	return string(b)
}

func (g *gen) word() string   { return g.secret(letters, 10+g.made.IntN(7), 8) }
func (g *gen) number() string { return g.secret(digits, 12+g.made.IntN(5), 9) }

func (g *gen) pick(options ...string) string { return options[g.c.intn(len(options))] }

func (g *gen) is(db ...string) bool {
	for _, d := range db {
		if g.src.db == d {
			return true
		}
	}
	return false
}

// token is a piece of a statement; punct may touch its neighbours without a space.
type token struct {
	text  string
	punct bool
}

// statement writes one statement; g.secrets are those it holds.
func (g *gen) statement() string {
	var toks []token
	if g.c.intn(4) == 1 {
		toks = append(toks, token{text: g.comment()})
	}
	toks = append(toks, token{text: g.pick("SELECT", "SELECT * FROM", "INSERT INTO", "UPDATE", "DELETE FROM",
		"CREATE TABLE", "DROP TABLE IF EXISTS", "WITH", "select count(*) from")})
	if g.c.intn(8) == 1 { // a long list: what follows is cut at the C program's bound
		var names []string
		for range 150 + g.c.intn(100) {
			names = append(names, g.pick("a", "bb", "users.c"))
		}
		toks = append(toks, token{text: strings.Join(names, ", ")})
	}
	for range g.c.intn(14) {
		last := toks[len(toks)-1].text
		nameSlot := false
		for _, kw := range []string{"FROM", "from", "INTO", "UPDATE", "TABLE", "EXISTS", "JOIN"} {
			nameSlot = nameSlot || strings.HasSuffix(last, kw)
		}
		switch k := g.c.intn(12); {
		case nameSlot && k < 6: // a literal or a comment where a table's name is read
			toks = append(toks, token{text: g.hidden()})
		case k < 2:
			toks = append(toks, token{text: g.pick("FROM", "WHERE", "AND", "OR", "INTO", "VALUES", "SET", "TABLE", "JOIN",
				"ON", "AS", "LIMIT", "IN", "NOT", "NULL", "SELECT", "FROM users")})
		case k < 4:
			toks = append(toks, token{text: g.name()})
		case k < 5:
			toks = append(toks, token{text: g.placeholder()})
		case k < 7:
			toks = append(toks, token{text: g.pick("(", ")", ","), punct: true})
		case k < 8:
			toks = append(toks, token{text: g.pick("=", "<>", "*", "+", "||", ";", "<=")})
		default:
			toks = append(toks, token{text: g.hidden()})
		}
	}
	if g.c.intn(4) == 1 {
		toks = append(toks, token{text: g.open()})
	}
	var b strings.Builder
	for i, t := range toks {
		if i > 0 && !((t.punct || toks[i-1].punct) && g.c.intn(2) == 1) {
			b.WriteString(g.pick(" ", "\n", "\t", "  ", "\r\n", " \f "))
		}
		b.WriteString(t.text)
	}
	return b.String()
}

func (g *gen) name() string {
	plain := []string{"users", "orders", "public.items", "t1", "x", "count(*)"}
	switch {
	case g.is("postgresql"):
		plain = append(plain, `"Order Items"`, `"it's"`, `"a--b"`, `"x/*y"`, `"q""q"`, `"#h"`)
	case g.is("mysql"):
		plain = append(plain, "`it's`", "`a--b`", "`x/*y`", "`b``q`", "`#h`", "$ident")
		if !g.src.dqString {
			plain = append(plain, `"it's"`, `"a\"`)
		}
	case g.is("sqlite"):
		plain = append(plain, "[it's]", "[a--b]", "`it's`", "[x/*y]", "`b``q`")
	case g.is("mssql"):
		plain = append(plain, "[it's]", "[a]]'b]", "[x/*y]", "[a--b]", "#temp")
	default:
		plain = append(plain, `"it's"`, `"x/*y"`)
	}
	return g.pick(plain...)
}

func (g *gen) placeholder() string {
	switch g.src.db {
	case "postgresql":
		return g.pick("$1", "$2", "$10")
	case "mysql":
		return "?"
	case "sqlite":
		return g.pick("?", "?1", "$1", ":name", "@name", "$name")
	case "mssql":
		return g.pick("@p1", "@name")
	case "oracle":
		return g.pick(":1", ":name")
	case "spanner":
		return "@p1"
	}
	return g.pick("?", ":1")
}

// hidden is a literal or a comment, holding secrets.
func (g *gen) hidden() string {
	if g.c.intn(2) == 0 {
		return g.literal()
	}
	return g.comment()
}

// piece is what a literal's or a comment's body holds besides its secret: bytes that
// other readings take for quotes, comments or escapes, or any bytes but NUL.
func (g *gen) piece() string {
	if g.c.intn(3) == 0 {
		b := make([]byte, 1+g.c.intn(4))
		for i := range b {
			b[i] = byte(1 + g.c.intn(255))
		}
		return string(b)
	}
	return g.pick("'", `"`, "`", `\`, `\\`, "''", "*/", "/*", "--", "-- ", "#", "//", "$$", "$a$", "\n", "\r", "]", "[",
		";", "?", " FROM x ", "SELECT", " ", "e'", "x'", "q'[", "*", "/", "!", "é", "\\'", "/*!", "$1", "}'")
}

// body is a literal's or comment's content: a secret among pieces, made safe inside
// it by esc.
func (g *gen) body(esc func(string) string) string {
	n := 1 + g.c.intn(5)
	if g.c.intn(10) == 1 {
		n = 100 + g.c.intn(300) // long: cut at the bound
	}
	at := g.c.intn(n)
	var b strings.Builder
	for i := range n {
		if i == at {
			b.WriteString(g.word())
		} else {
			b.WriteString(g.piece())
		}
	}
	return esc(b.String())
}

// quoted escapes s inside a literal quoted by q: q doubled (or escaped), and
// backslashes escaped where they escape.
func (g *gen) quoted(q byte, escapes bool) func(string) string {
	return func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == q && escapes && g.c.intn(2) == 1:
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == q:
				b.WriteByte(c)
				b.WriteByte(c)
			case c == '\\' && escapes:
				b.WriteString(`\\`)
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	}
}

// literal is one of the database's literals, holding a secret.
func (g *gen) literal() string {
	std := func() string { return "'" + g.body(g.quoted('\'', g.src.escapes)) + "'" }
	number := func() string {
		switch g.c.intn(4) {
		case 0:
			return g.number()
		case 1:
			return "1." + g.number()
		case 2:
			return "." + g.number() + "e-5"
		}
		return "0x" + g.secret(hexits, 16, 9)
	}
	switch g.src.db {
	case "postgresql":
		switch g.c.intn(9) {
		case 0:
			return "E'" + g.body(g.quoted('\'', true)) + "'"
		case 1, 2:
			return g.dollarQuoted(g.pick("$$", "$a$", "$tag_1$", "$A$"))
		case 3:
			return "X'" + g.secret(hexits, 16, 9) + "'"
		case 4:
			return "B'" + g.secret("01", 48, 32) + "'"
		case 5:
			return g.pick("N", "U&") + std()
		case 6:
			return number()
		}
		return std()
	case "mysql":
		dq := func() string { return `"` + g.body(g.quoted('"', g.src.escapes)) + `"` }
		switch g.c.intn(8) {
		case 0:
			if g.src.dqString {
				return dq()
			}
		case 1:
			return g.pick("X", "x") + "'" + g.secret(hexits, 16, 9) + "'"
		case 2:
			return g.pick("N", "_utf8mb4", "_binary ") + std()
		case 3:
			return g.pick("b", "B") + "'" + g.secret("01", 48, 32) + "'"
		case 4:
			return number()
		}
		return std()
	case "sqlite":
		switch g.c.intn(5) {
		case 0:
			return `"` + g.body(g.quoted('"', false)) + `"`
		case 1:
			return "X'" + g.secret(hexits, 16, 9) + "'"
		case 2:
			return number()
		}
		return std()
	case "mssql":
		switch g.c.intn(6) {
		case 0:
			return `"` + g.body(g.quoted('"', false)) + `"`
		case 1:
			return "N" + std()
		case 2:
			return "$" + g.number() + ".25"
		case 3:
			return number()
		}
		return std()
	case "oracle":
		if g.c.intn(2) == 0 {
			open := g.pick("[", "{", "<", "(", "!", "#")
			closing := map[string]string{"[": "]", "{": "}", "<": ">", "(": ")"}[open]
			if closing == "" {
				closing = open
			}
			body := g.body(func(s string) string { return strings.ReplaceAll(s, closing+"'", closing+" '") })
			if strings.HasSuffix(body, closing) {
				body += " "
			}
			return g.pick("q", "Q", "nq") + "'" + open + body + closing + "'"
		}
		return std()
	case "spanner":
		switch g.c.intn(4) {
		case 0:
			q := g.pick("'''", `"""`)
			return q + g.body(func(s string) string {
				// A lone quote stays: no run of them, none at an end.
				s = strings.ReplaceAll(s, `\`, `\\`)
				var b strings.Builder
				for i := 0; i < len(s); i++ {
					if s[i] == q[0] && (i == 0 || i == len(s)-1 || s[i-1] == q[0] || s[i+1] == q[0]) {
						b.WriteByte('\\')
					}
					b.WriteByte(s[i])
				}
				return b.String()
			}) + q
		case 1:
			return `"` + g.body(g.quoted('"', true)) + `"`
		case 2:
			return number()
		}
		return std()
	}
	// snowflake
	if g.c.intn(2) == 0 {
		body := g.body(func(s string) string { return strings.ReplaceAll(s, "$", "S") })
		return "$$" + body + "$$"
	}
	return std()
}

// dollarQuoted is a PostgreSQL dollar-quoted string: its body never holds its tag.
func (g *gen) dollarQuoted(tag string) string {
	body := g.body(func(s string) string { return s })
	if strings.Index(body+tag, tag) != len(body) {
		body = g.word()
	}
	return tag + body + tag
}

// comment is one of the database's comments, holding secrets; a line comment with
// its line's end.
func (g *gen) comment() string {
	switch g.c.intn(3) {
	case 0:
		if g.src.crEnds {
			return g.lineComment() + g.pick("\n", "\r\n", "\r")
		}
		return g.lineComment() + g.pick("\n", "\r\n")
	case 1:
		if g.is("postgresql", "mssql") {
			return g.nestedComment(3)
		}
		if g.is("mysql") && g.c.intn(2) == 0 {
			return g.versionComment()
		}
	}
	body := g.body(func(s string) string { return defuse(s, false) })
	if g.is("postgresql", "mssql") {
		body = edges(defuse(body, true))
	}
	if g.is("mysql") && (strings.HasPrefix(body, "!") || strings.HasPrefix(body, "+") || strings.HasPrefix(body, "M!")) {
		body = " " + body
	}
	return "/*" + body + "*/"
}

// lineComment is a line comment without its line's end: its body holds none.
func (g *gen) lineComment() string {
	start := "--" + g.pick(" ", "\t", "", "-")
	switch {
	case g.is("mysql"):
		start = g.pick("# ", "#", "-- ", "--\t", "--\x01")
	case g.is("spanner") && g.c.intn(2) == 0:
		start = "#"
	case g.is("snowflake") && g.c.intn(2) == 0:
		start = "//"
	}
	body := g.body(func(s string) string {
		s = strings.ReplaceAll(s, "\n", " ")
		if g.src.crEnds {
			s = strings.ReplaceAll(s, "\r", " ")
		}
		return s
	})
	return start + body
}

// nestedComment is a PostgreSQL or SQL Server comment with comments inside.
func (g *gen) nestedComment(depth int) string {
	var b strings.Builder
	b.WriteString("/*")
	for range 1 + g.c.intn(3) {
		if depth > 0 && g.c.intn(3) == 0 {
			b.WriteString(g.nestedComment(depth - 1))
		} else {
			b.WriteString(edges(defuse(g.body(func(s string) string { return s }), true)))
		}
	}
	b.WriteString("*/")
	return b.String()
}

// versionComment is a MySQL comment whose content is SQL: its strings may hold */.
func (g *gen) versionComment() string {
	open := g.pick("/*!", "/*!50000 ", "/*M!100100 ")
	var parts []string
	for range 1 + g.c.intn(3) {
		if g.c.intn(2) == 0 {
			parts = append(parts, g.word())
		} else {
			parts = append(parts, "'"+g.body(g.quoted('\'', g.src.escapes))+"'")
		}
	}
	return open + strings.Join(parts, " ") + " */"
}

// open is a literal or a comment left open at the end: the text was cut there.
func (g *gen) open() string {
	switch g.c.intn(4) {
	case 0:
		return "'" + g.body(g.quoted('\'', g.src.escapes))
	case 1:
		return "/*" + edges(defuse(g.body(func(s string) string { return s }), true))
	case 2:
		return g.lineComment()
	}
	if g.is("postgresql") {
		body := g.body(func(s string) string { return s })
		for strings.Contains(body, "$x$") {
			body = strings.Replace(body, "$x$", "$ x$", 1)
		}
		return "$x$" + body
	}
	return "'" + g.body(g.quoted('\'', g.src.escapes))
}

// defuse breaks every */ in s (and /* too, where comments nest) with a space.
func defuse(s string, opens bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if i > 0 && (s[i-1] == '*' && s[i] == '/' || opens && s[i-1] == '/' && s[i] == '*') {
			b.WriteByte(' ')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// edges puts a space at either end of s that is a * or a /: nothing it touches makes
// a comment's start or end.
func edges(s string) string {
	if s != "" && (s[0] == '*' || s[0] == '/') {
		s = " " + s
	}
	if s != "" && (s[len(s)-1] == '*' || s[len(s)-1] == '/') {
		s += " "
	}
	return s
}

// exported is everything the span holds as text: its name and its attributes.
func exported(s telemetry.Span) string {
	var b strings.Builder
	b.WriteString(s.Name)
	for _, a := range s.Attributes {
		b.WriteString("\x00" + string(a.Key) + "=" + a.Value.Emit())
	}
	return b.String()
}

// leaked is the first window of a secret found in out, or "".
func leaked(out string, secrets []secret) string {
	for _, s := range secrets {
		for i := 0; i+s.window <= len(s.text); i++ {
			if w := s.text[i : i+s.window]; strings.Contains(out, w) {
				return w
			}
		}
	}
	return ""
}

// checkStatement generates one statement and checks the span the probe makes of it.
func checkStatement(t *testing.T, c chooser, src source, seed uint64) (text string, span telemetry.Span) {
	t.Helper()
	g := newGen(c, src, seed)
	text = g.statement()
	span = spanOf(src.system, text)
	if w := leaked(exported(span), g.secrets); w != "" {
		t.Errorf("%s (%s, as %s): %q of a secret was exported\nstatement %q\nexported  %q",
			src.db, readingName(src), src.system, w, text, exported(span))
	}
	return text, span
}

func readingName(s source) string {
	return fmt.Sprintf("escapes=%v dq-string=%v cr-ends=%v", s.escapes, s.dqString, s.crEnds)
}

// seeds are the generator's seeds: fixed ones, and one new each run (said, so that a
// failure can be run again with SQLTEXT_SEED).
func seeds(t *testing.T) []uint64 {
	if s := os.Getenv("SQLTEXT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SQLTEXT_SEED=%s: %v", s, err)
		}
		return []uint64{n}
	}
	fresh := uint64(time.Now().UnixNano())
	t.Logf("seeds 1, 2, %d (SQLTEXT_SEED=N runs one)", fresh)
	return []uint64{1, 2, fresh}
}

func TestGeneratedStatementsNeverLeak(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 300
	}
	for _, seed := range seeds(t) {
		r := rand.New(rand.NewPCG(seed, 1))
		for _, src := range sources() {
			for i := range n {
				checkStatement(t, randChooser{r}, src, seed<<20+uint64(i))
				if t.Failed() {
					t.Fatalf("seed %d", seed)
				}
			}
		}
	}
}

// The generator writes what it means to: the one reading it writes for hides every
// secret by itself (the other readings do not make up for a statement written wrong),
// and most statements keep their operation.
func TestGeneratorWritesWhatItMeans(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, src := range sources() {
		if src.system == "other_sql" && src.db != "oracle" && src.db != "snowflake" {
			continue
		}
		own := newDialect([]reading{ownReading(src)})
		named, n := 0, 300
		for range n {
			g := newGen(randChooser{r}, src, r.Uint64())
			text := g.statement()
			text = text[:min(len(text), queryTextMax)]
			if w := leaked(sanitize(text, own), g.secrets); w != "" {
				t.Errorf("%s (%s): its own reading leaves %q of a secret in %q:\n%q", src.db, readingName(src), w, text, sanitize(text, own))
			}
			if op, _ := summarize(sanitize(text, own)); op != "" {
				named++
			}
		}
		if named < n/2 {
			t.Errorf("%s (%s): %d of %d statements keep their operation", src.db, readingName(src), named, n)
		}
	}
}

// A text is read the same whether every reading of its database reads it or only
// those that differ in what it holds.
func TestReadingsThatDifferOnly(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, src := range sources() {
		for range 200 {
			text := newGen(randChooser{r}, src, r.Uint64()).statement()
			for _, system := range []string{"postgresql", "mysql", "sqlite", "microsoft.sql_server", "other_sql"} {
				d := dialectOf(system)
				every := &dialect{readings: d.readings, distinct: map[features][]reading{}}
				every.distinct[featuresOf(text)] = d.readings
				if got, want := sanitize(text, d), sanitize(text, every); got != want {
					t.Fatalf("%s %q:\n got %q\nwant %q (every reading)", system, text, got, want)
				}
			}
		}
	}
}

// ownReading is the one reading a source's statements are written for.
func ownReading(s source) reading {
	backslash := backslashPlain
	if s.escapes {
		backslash = backslashEscapes
	}
	switch s.db {
	case "postgresql":
		return postgresReading
	case "mysql":
		return reading{dqStrings: s.dqString, backslash: backslash, backticks: true, hash: true, dashSpace: true,
			dollarParams: true, execComments: true}
	case "sqlite":
		return sqliteReadings[0]
	case "mssql":
		return reading{dqStrings: true, brackets: bracketsDoubled, nested: true, money: true, crEndsLine: s.crEnds}
	case "oracle":
		return reading{qQuotes: true}
	case "spanner":
		return reading{tripleQuotes: true, dqStrings: true, backslash: backslashEscapes, hash: true}
	}
	return reading{backslash: backslashEscapes, slashSlash: true, dollarPlain: true}
}

// FuzzGeneratedStatements: the fuzzer's bytes make the generator's choices, the
// pieces of literals and comments among them.
func FuzzGeneratedStatements(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("\x01\x05\x03\x00\x07\x02\x09\x01\x04\x06"), uint8(1))
	f.Add([]byte("\x01\x01\x01\x0b\x0b\x0b\x0b\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"), uint8(2))
	ss := sources()
	f.Fuzz(func(t *testing.T, choices []byte, which uint8) {
		src := ss[int(which)%len(ss)]
		checkStatement(t, &bytesChooser{choices}, src, uint64(len(choices)))
	})
}

// Through the launcher's own pipeline: the spans of generated statements exported over
// OTLP to a receiver, and their duration metric, hold no secret anywhere — names,
// attributes, metric attributes.
func TestGeneratedStatementsNeverLeakThroughExport(t *testing.T) {
	recv := testenv.StartReceiver(t)
	for k, v := range map[string]string{
		"OTEL_SDK_DISABLED": "", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.Endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "",
		"OTEL_TRACES_SAMPLER": "always_on", "OTEL_METRIC_EXPORT_INTERVAL": "600000",
		"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "leak-test", "OTEL_RESOURCE_ATTRIBUTES": "",
	} {
		t.Setenv(k, v)
	}
	cfg, err := otelconfig.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pipe, err := telemetry.New(ctx, telemetry.App{Path: "/app", PID: 1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Shutdown(ctx)

	ss := seeds(t)
	seed := ss[len(ss)-1]
	r := rand.New(rand.NewPCG(seed, 2))
	var all []secret
	emitted := 0
	var span telemetry.Span
	emit := func(system, text string) {
		p := &Probe{system: system}
		var ev databasesqlSqlEvent
		ev.Query.Copied = uint32(copy(ev.Query.Text[:], text))
		ev.StartNs, ev.EndNs = 1e9, 1e9+2e6
		ev.Sc.TraceId[0], ev.Sc.SpanId[0] = byte(emitted>>8)|1, byte(emitted)|1
		ev.Sc.TraceId[1], ev.Sc.SpanId[1] = byte(emitted), byte(emitted>>8)
		p.operationSpan(&ev, &span)
		pipe.Emit(&span)
		emitted++
	}
	for _, c := range hostileStatements {
		emit(c.system, c.text)
		all = append(all, secret{"secret", 6})
	}
	for _, src := range sources() {
		for range 40 {
			g := newGen(randChooser{r}, src, r.Uint64())
			emit(src.system, g.statement())
			all = append(all, g.secrets...)
		}
	}
	if err := pipe.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	spans := recv.Spans()
	if len(spans) != emitted {
		t.Fatalf("%d spans received, %d emitted", len(spans), emitted)
	}
	for _, s := range spans {
		out := s.Name + "\x00" + s.StatusMessage
		for k, v := range s.Attrs {
			out += "\x00" + k + "=" + fmt.Sprint(v)
		}
		if w := leaked(out, all); w != "" {
			t.Errorf("span %q exported %q of a secret: %v", s.Name, w, s.Attrs)
		}
	}
	var counted uint64
	for _, h := range recv.Histograms() {
		if h.Metric != "db.client.operation.duration" {
			t.Errorf("metric %s", h.Metric)
			continue
		}
		counted += h.Count
		var out string
		for k, v := range h.Attrs {
			out += "\x00" + k + "=" + fmt.Sprint(v)
		}
		if w := leaked(out, all); w != "" {
			t.Errorf("db.client.operation.duration exported %q of a secret: %v", w, h.Attrs)
		}
		if _, ok := h.Attrs["db.query.text"]; ok {
			t.Errorf("db.client.operation.duration has db.query.text: %v", h.Attrs)
		}
	}
	if counted != uint64(emitted) {
		t.Errorf("db.client.operation.duration counted %d operations, %d emitted", counted, emitted)
	}
}

// hostileStatements are the privilege boundary review's, each with "secret" in a literal or a comment.
var hostileStatements = []struct{ system, text string }{
	{"postgresql", "SELECT * FROM /* secret */ users"},
	{"postgresql", "SELECT 'from secret'"},
	{"postgresql", "SELECT * FROM /* a /* b */ secret */ users"},
	{"mysql", "SELECT * FROM users # secret"},
	{"mysql", "SELECT * FROM 'secret'"},
	{"other_sql", "SELECT * FROM /* a /* b */ secret */ users # secret\n"},
	{"sqlite", `SELECT * FROM "secret"`},
}
