package domain

import "errors"

// fieldErrors collects every invalid field of one input so a client learns
// about all of them at once instead of one per round trip.
type fieldErrors []error

func (f *fieldErrors) add(field, msg string) {
	*f = append(*f, fieldErr(field, msg))
}

// addErr keeps an error returned by a nested validator (already a FieldError
// or a join of them).
func (f *fieldErrors) addErr(err error) {
	if err != nil {
		*f = append(*f, err)
	}
}

// err returns nil, the single error, or all of them joined. A single error is
// returned as is so that its message is not altered by errors.Join.
func (f fieldErrors) err() error {
	switch len(f) {
	case 0:
		return nil
	case 1:
		return f[0]
	default:
		return errors.Join(f...)
	}
}
