package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// CanonicalJSON re-encodes a JSON document with sorted object keys, no
// insignificant white space and numbers kept as written, so that what Go
// wrote and what JSONB gives back hash alike. Appends, VerifyStream and the
// verifier all use it; it runs the one-pass canonicalizer (canonicalFast),
// whose output is defined as canonicalReference's.
func CanonicalJSON(doc []byte) ([]byte, error) { return canonicalFast(doc) }

// canonicalReference defines the canonical form: decode with numbers kept
// as written, re-encode with encoding/json (sorted keys, no HTML escaping).
// The fast path falls back to it for anything unusual, and
// FuzzCanonicalFast checks the two agree.
func canonicalReference(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// canonicalFast returns exactly what canonicalReference returns for doc,
// several times faster (every append and every verified event goes through
// it): it re-encodes the document in one pass instead of decoding it into
// maps. It falls back to canonicalReference for anything unusual (trailing
// data, invalid JSON), so the two never disagree; FuzzCanonicalFast checks
// that.
func canonicalFast(doc []byte) ([]byte, error) {
	var c Canonicalizer
	out, err := c.Canonical(doc)
	return bytes.Clone(out), err
}

// Canonicalizer computes CanonicalJSON with buffers reused from call to
// call, for loops over many events (the verifier, the export); one per
// goroutine. Its zero value is ready to use.
type Canonicalizer struct {
	p   canonParser
	out []byte
}

// Canonical returns the canonical form of doc (CanonicalJSON), valid until
// the next call.
func (c *Canonicalizer) Canonical(doc []byte) ([]byte, error) {
	c.p.s, c.p.i, c.p.depth = doc, 0, 0
	c.p.skipWS()
	out, err := c.p.value(c.out[:0])
	if err == nil {
		c.out = out
		c.p.skipWS()
		if c.p.i == len(c.p.s) {
			return out, nil
		}
	}
	return canonicalReference(doc)
}

var errCanon = errors.New("canonical json: not handled by the fast path")

type canonParser struct {
	s []byte
	i int
	// depth bounds recursion like encoding/json's scanner (10000).
	depth int
	// Per nesting level, reused: an object's members and the buffer their
	// canonical values are written to before sorting.
	members [][]canonMember
	bufs    [][]byte
}

type canonMember struct {
	key        []byte
	start, end int
}

func (p *canonParser) skipWS() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *canonParser) value(dst []byte) ([]byte, error) {
	if p.i >= len(p.s) {
		return nil, errCanon
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(dst)
	case c == '[':
		return p.array(dst)
	case c == '"':
		str, err := p.str()
		if err != nil {
			return nil, err
		}
		return appendGoJSONString(dst, str), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(dst)
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	}
	return nil, errCanon
}

func (p *canonParser) literal(dst []byte, lit string) ([]byte, error) {
	if !bytes.HasPrefix(p.s[p.i:], []byte(lit)) {
		return nil, errCanon
	}
	p.i += len(lit)
	return append(dst, lit...), nil
}

func (p *canonParser) number(dst []byte) ([]byte, error) {
	start := p.i
	s := p.s
	i := p.i
	if s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return nil, errCanon
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return nil, errCanon
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, errCanon
		}
	}
	p.i = i
	// json.Number keeps the literal as written.
	return append(dst, s[start:i]...), nil
}

func (p *canonParser) array(dst []byte) ([]byte, error) {
	if p.depth++; p.depth > 10000 {
		return nil, errCanon
	}
	defer func() { p.depth-- }()
	p.i++ // [
	dst = append(dst, '[')
	p.skipWS()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return append(dst, ']'), nil
	}
	for n := 0; ; n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		p.skipWS()
		var err error
		if dst, err = p.value(dst); err != nil {
			return nil, err
		}
		p.skipWS()
		if p.i >= len(p.s) {
			return nil, errCanon
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return append(dst, ']'), nil
		default:
			return nil, errCanon
		}
	}
}

func (p *canonParser) object(dst []byte) ([]byte, error) {
	if p.depth++; p.depth > 10000 {
		return nil, errCanon
	}
	level := p.depth
	defer func() { p.depth-- }()
	p.i++ // {
	p.skipWS()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return append(dst, '{', '}'), nil
	}
	for len(p.members) <= level {
		p.members = append(p.members, nil)
		p.bufs = append(p.bufs, nil)
	}
	members, buf := p.members[level][:0], p.bufs[level][:0]
	for {
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, errCanon
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, errCanon
		}
		p.i++
		p.skipWS()
		start := len(buf)
		if buf, err = p.value(buf); err != nil {
			return nil, err
		}
		members = append(members, canonMember{key: key, start: start, end: len(buf)})
		p.skipWS()
		if p.i >= len(p.s) {
			return nil, errCanon
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.s[p.i] != '}' {
			return nil, errCanon
		}
		p.i++
		break
	}
	// A Go map keeps the last of duplicate keys and encodes keys in byte
	// order.
	slices.SortStableFunc(members, func(a, b canonMember) int { return bytes.Compare(a.key, b.key) })
	dst = append(dst, '{')
	first := true
	for j, m := range members {
		if j+1 < len(members) && bytes.Equal(members[j+1].key, m.key) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendGoJSONString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, buf[m.start:m.end]...)
	}
	p.members[level], p.bufs[level] = members, buf
	return append(dst, '}'), nil
}

// str reads a JSON string at p.i and returns its decoded bytes as
// encoding/json decodes them (invalid UTF-8 and lone surrogates become
// U+FFFD).
func (p *canonParser) str() ([]byte, error) {
	s := p.s
	i := p.i + 1
	start := i
	// Fast path: nothing to decode.
	for i < len(s) {
		c := s[i]
		if c == '"' {
			p.i = i + 1
			return s[start:i], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	out := append([]byte(nil), s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			return out, nil
		case c < 0x20:
			return nil, errCanon
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errCanon
			}
			switch s[i+1] {
			case '"', '\\', '/':
				out = append(out, s[i+1])
				i += 2
			case 'b':
				out = append(out, '\b')
				i += 2
			case 'f':
				out = append(out, '\f')
				i += 2
			case 'n':
				out = append(out, '\n')
				i += 2
			case 'r':
				out = append(out, '\r')
				i += 2
			case 't':
				out = append(out, '\t')
				i += 2
			case 'u':
				r := getu4(s[i:])
				if r < 0 {
					return nil, errCanon
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r1 := getu4(s[i:]); r1 >= 0 {
						if dec := utf16.DecodeRune(r, r1); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, errCanon
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, s[i:i+size]...)
			}
			i += size
		}
	}
	return nil, errCanon
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

const hexDigits = "0123456789abcdef"

// appendGoJSONString encodes s as encoding/json does with SetEscapeHTML
// (false).
func appendGoJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
