package offsets

// SetDatabase makes analysis use db instead of the embedded database until restore.
func SetDatabase(db *Database) (restore func()) {
	old := database
	UseDatabase(db)
	return func() { database = old }
}
