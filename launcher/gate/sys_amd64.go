package gate

const sysSeccomp = 317
