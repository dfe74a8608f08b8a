#!/bin/sh
# /etc/libvirt/scripts/vif-route (glidepath lab; the blog's script)
# $1 is the tap interface libvirt created.
ip link set "$1" up
case "$1" in
    vif0)
        ip route add 203.0.113.2 dev "$1" >/dev/null 2>&1
        ;;
    vif1)
        ip route add 203.0.113.3 dev "$1" >/dev/null 2>&1
        ;;
    vif2)
        ip route add 203.0.113.4 dev "$1" >/dev/null 2>&1
        ;;
    vif3)
        ip route add 203.0.113.5 dev "$1" >/dev/null 2>&1
        ;;
    vif4)
        ip route add 203.0.113.6 dev "$1" >/dev/null 2>&1
        ;;
    vif5)
        ip route add 203.0.113.7 dev "$1" >/dev/null 2>&1
        ;;
esac
echo 1 > /proc/sys/net/ipv4/conf/"$1"/proxy_arp
echo 0 > /proc/sys/net/ipv4/neigh/"$1"/proxy_delay
exit 0
