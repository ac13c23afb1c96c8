#!/usr/bin/perl
# The container image's demo upstream: a small static file server for its
# working directory, written against Perl's core modules only, so it runs on
# the perl that every Debian image carries (perl-base). edgeward's supervisor
# starts it (upstream.command in /etc/edgeward/edgeward.yaml) with IP and PORT
# in the environment; what it prints goes to the site's sites log.
#
# GET and HEAD; a directory serves its index.html; a file is served with
# `Cache-Control: public, max-age=$MAX_AGE` (default 60) so that edgeward's
# cache has something to store; one process per connection, which is closed
# after the answer. Not a production web server: run your application's own
# (build an image FROM edgeward with its runtime).
use strict;
use warnings;
use IO::Socket::IP;
use POSIX ();

my $ip      = $ENV{IP}   // '127.0.0.1';
my $port    = $ENV{PORT} // die "server.pl: PORT is not set\n";
my $max_age = $ENV{MAX_AGE} // 60;
my %types   = (
    html => 'text/html; charset=utf-8', htm  => 'text/html; charset=utf-8',
    txt  => 'text/plain; charset=utf-8', css  => 'text/css',
    js   => 'text/javascript',          json => 'application/json',
    svg  => 'image/svg+xml',            png  => 'image/png',
    jpg  => 'image/jpeg',               ico  => 'image/x-icon',
);

$| = 1;
my $server = IO::Socket::IP->new(
    LocalHost => $ip, LocalPort => $port, Listen => 128, ReuseAddr => 1,
) or die "server.pl: cannot listen on $ip:$port: $@\n";
$SIG{CHLD} = 'IGNORE';    # children are reaped by the kernel
$SIG{TERM} = sub { exit 0 };
print "server.pl: serving ", POSIX::getcwd(), " on $ip:$port (perl $^V)\n";

while (1) {
    my $client = $server->accept or next;
    my $pid = fork;
    if (!defined $pid) { close $client; next }
    if ($pid) { close $client; next }
    close $server;
    $SIG{ALRM} = sub { exit 0 };    # a client that sends nothing
    alarm 30;
    serve($client);
    exit 0;
}

sub answer {
    my ($c, $status, $type, $body, $head_only) = @_;
    print $c "HTTP/1.1 $status\r\n",
        "Content-Type: $type\r\n",
        "Content-Length: ", length($body), "\r\n",
        ($status =~ /^200/ ? "Cache-Control: public, max-age=$max_age\r\n" : ''),
        "Connection: close\r\n\r\n";
    print $c $body unless $head_only;
    close $c;
}

sub serve {
    my ($c) = @_;
    local $/ = "\n";
    my $line = <$c>;
    return unless defined $line;
    while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }    # headers: not needed
    my ($method, $target) = $line =~ m{^([A-Z]+) (\S+) HTTP/1\.[01]\r?\n$}
        or return answer($c, '400 Bad Request', 'text/plain', "bad request\n");
    my $head = $method eq 'HEAD';
    return answer($c, '405 Method Not Allowed', 'text/plain', "GET or HEAD only\n")
        unless $head || $method eq 'GET';
    (my $path = $target) =~ s/[?#].*//s;
    $path =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    my $status = '404 Not Found';
    my ($type, $body) = ('text/plain', "not found\n");
    if ($path =~ m{^/} && $path !~ m{(^|/)\.\.(/|$)} && $path !~ /\0/) {
        my $file = '.' . $path;
        $file .= ($file =~ m{/$} ? '' : '/') . 'index.html' if -d $file;
        if (-f $file && open(my $fh, '<:raw', $file)) {
            local $/;
            $body   = <$fh> // '';
            $status = '200 OK';
            my ($ext) = $file =~ /\.([A-Za-z0-9]+)$/;
            $type = $types{ lc($ext // '') } // 'application/octet-stream';
        }
    }
    print "server.pl: $method $target ", substr($status, 0, 3), "\n";
    answer($c, $status, $type, $body, $head);
}
