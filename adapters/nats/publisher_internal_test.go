package natsforward

import "testing"

func TestCoveredBy(t *testing.T) {
	for _, tc := range []struct {
		subject string
		filters []string
		want    bool
	}{
		{"ledger.>", []string{"ledger.>"}, true},
		{"ledger.>", []string{">"}, true},
		{"ledger.>", []string{"*.>"}, true},
		{"ledger.>", []string{"ledger.*"}, false},
		{"ledger.>", []string{"ledger.*.>"}, false},
		{"ledger.>", []string{"other.>", "ledger.>"}, true},
		{"ledger.>", []string{"ledger"}, false},
		{"a.b.>", []string{"a.>"}, true},
		{"a.b.>", []string{"a.*.>"}, true},
		{"a.b.>", []string{"a.c.>"}, false},
		{"ledger.>", nil, false},
	} {
		if got := coveredBy(tc.subject, tc.filters); got != tc.want {
			t.Errorf("coveredBy(%q, %q) = %v, want %v", tc.subject, tc.filters, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{URL: "nats://127.0.0.1:4222", Source: "http://localhost:8000"}
	ok.setDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Config){
		"no URL":           func(c *Config) { c.URL = "" },
		"no source":        func(c *Config) { c.Source = "" },
		"stream with dot":  func(c *Config) { c.Stream = "A.B" },
		"prefix wildcard":  func(c *Config) { c.SubjectPrefix = "ledger.*" },
		"prefix empty tok": func(c *Config) { c.SubjectPrefix = "a..b" },
		"negative window":  func(c *Config) { c.DuplicateWindow = -1 },
	} {
		c := ok
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                  "nats://127.0.0.1:4222",
		"nats://user:secret@h:4222":              "nats://user:xxxxx@h:4222",
		"nats://tok3n@h:4222,nats://a:b@h2:4222": "nats://xxxxx@h:4222,nats://a:xxxxx@h2:4222",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
