package gate

const sysSeccomp = 277
