module crccheck

go 1.26.0
