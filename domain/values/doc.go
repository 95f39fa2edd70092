// Package values holds the domain's value types and its error vocabulary:
// the error sentinels and FieldError, the stay (DateRange) and Money. It
// imports the standard library only; package domain re-exports every name
// (domain/values.go), so callers keep writing domain.DateRange and
// domain.ErrInvalid. Its tests are package domain's (daterange_test.go,
// money_test.go, errors_test.go), written against those names.
package values
