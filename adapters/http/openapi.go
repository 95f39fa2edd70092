package http

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"go.yaml.in/yaml/v4"
)

// openAPIYAML is the OpenAPI 3.1 description of this handler's endpoints
// (openapi.yaml, linked from docs/openapi.yaml). The HTTP tests check every
// request and answer they make against it, and that it describes every
// route (openapi_test.go), so it cannot drift from the code unnoticed.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// openAPIJSON is openAPIYAML as JSON, converted once (NewHandler fails
// when it does not parse): GET /openapi.json.
var openAPIJSON = sync.OnceValues(func() ([]byte, error) { return yamlToJSON(openAPIYAML) })

// yamlToJSON converts a YAML document to JSON. Mapping keys must be
// strings (the OpenAPI document quotes its status codes).
func yamlToJSON(doc []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml as JSON: %w", err)
	}
	return b, nil
}

// openAPI answers GET /openapi.json: the document, to anyone (it holds no
// secret and tells a client how to call the API).
func (s *server) openAPI(w http.ResponseWriter, r *http.Request) {
	doc, err := openAPIJSON()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(doc)
	}
}
