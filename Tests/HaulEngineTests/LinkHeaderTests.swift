@testable import Haul
import Testing

@Suite("Link headers (Metalink/HTTP)")
struct LinkHeaderTests {
    @Test("Duplicates by priority, relative targets resolved, other relations and schemes skipped")
    func duplicates() {
        let fields: [(name: String, value: String)] = [
            ("Link", "<http://b.example/f>; rel=duplicate; pri=2; geo=de, <http://c.example/f?a=1,2>; rel=\"duplicate\"; pri=1"),
            ("link", "</other/f>; rel=duplicate; pri=3, <ftp://d.example/f>; rel=duplicate; pri=1"),
            ("Link", "<http://e.example/f.meta4>; rel=describedby; type=\"application/metalink4+xml\""),
            ("Link", "<http://f.example/f>; rel=duplicate, garbage, <>; rel=duplicate, <http://b.example/f>; rel=duplicate"),
        ]
        #expect(LinkHeader.duplicates(in: fields, base: "http://a.example/dir/f") == [
            "http://c.example/f?a=1,2", "http://b.example/f", "http://a.example/other/f", "http://f.example/f",
        ])
        #expect(LinkHeader.duplicates(in: fields, base: nil, limit: 1) == ["http://c.example/f?a=1,2"])
    }

    @Test("Parameters and relation lists")
    func parameters() {
        let links = LinkHeader.parse(["<http://x/f.meta4>; rel=\"describedby duplicate\"; type=\"application/metalink4+xml\""])
        #expect(links == [LinkHeader(target: "http://x/f.meta4", relations: ["describedby", "duplicate"],
                                     parameters: ["type": "application/metalink4+xml"])])
    }

    @Test("describedby: the first metalink link, resolved against the response's URL; other types and schemes skipped")
    func describedBy() {
        let fields: [(name: String, value: String)] = [
            ("Link", "<http://b.example/f>; rel=duplicate"),
            ("Link", "<ftp://x.example/f.meta4>; rel=describedby; type=\"application/metalink4+xml\""),
            ("Link", "</f.torrent>; rel=describedby; type=\"application/x-bittorrent\""),
            ("link", "<../meta/f.meta4>; rel=describedby; type=\"Application/Metalink4+XML\", </g.meta4>; rel=describedby"),
        ]
        #expect(LinkHeader.describedBy(in: fields, base: "http://a.example/dir/f") == "http://a.example/meta/f.meta4")
        #expect(LinkHeader.describedBy(in: Array(fields.prefix(3)), base: "http://a.example/dir/f") == nil)
    }
}
