FROM busybox
RUN <<EOF
echo one
echo two > /two
EOF
RUN <<-'SCRIPT' sh -e
	echo "$HOME stays literal"
	SCRIPT
RUN cat <<A > /a && 3<<"B" cat /dev/fd/3 > /b
alpha $HOME
A
beta
B
COPY <<EOF /etc/motd
welcome to ${NAME}
EOF
COPY <<one <<two /dest/
1
one
2
two
